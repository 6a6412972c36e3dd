"""index: VectorBatch -> Weaviate (idempotent upsert by chunk id) + WindowIndexed.

The event is produced only after Weaviate acknowledged every object, and in the same Kafka
transaction as the input offset: a crash in between replays the write, which replaces.
"""

from __future__ import annotations

from streams.adapters.weaviate_store import ChunkIndex
from streams.messages import Message, VectorBatch, WindowIndexed
from streams.pipeline import STAGE_SPECS, Stage
from streams.settings import Settings


class Index:
    def __init__(self, index: ChunkIndex) -> None:
        self.index = index

    def __call__(self, batch: VectorBatch) -> list[Message]:
        written = self.index.upsert(batch)
        return [WindowIndexed(**batch.window_identity(), items=written)]


def make_stage(settings: Settings) -> Stage[VectorBatch]:
    chunks = ChunkIndex(settings)
    chunks.prepare()
    return Stage(STAGE_SPECS["index"], Index(chunks))
