"""index: VectorBatch -> Weaviate (idempotent upsert by chunk id) + WindowIndexed.

A window of an edited document (it has a base version and objects to reuse) writes only the
chunks the current version has no object of, and marks the objects given to it that it no
longer has as dropped by the new version (streams/adapters/weaviate_store.py): neither is
visible to search until the tracker switches versions.

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
        result = self.index.index_window(batch)
        return [
            WindowIndexed(
                **batch.window_identity(),
                items=len(batch.chunks),
                written=result.written,
                dropped=result.dropped,
                sources=list(result.sources),
            )
        ]


def make_stage(settings: Settings) -> Stage[VectorBatch]:
    chunks = ChunkIndex(settings)
    chunks.prepare()
    return Stage(STAGE_SPECS["index"], Index(chunks), close=chunks.close)
