"""embed: ChunkBatch -> VectorBatch + WindowEmbedded, through the configured Embedder."""

from __future__ import annotations

import numpy as np

from streams.adapters.embedders import Embedder, make_embedder
from streams.errors import PoisonInput
from streams.messages import (
    ChunkBatch,
    EmbeddedChunk,
    Message,
    VectorBatch,
    WindowEmbedded,
    encode_vector,
)
from streams.runner import Stage
from streams.settings import Settings


class Embed:
    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def __call__(self, batch: ChunkBatch) -> list[Message]:
        too_long = [c.index for c in batch.chunks if c.tokens > self.embedder.max_input_tokens]
        if too_long:  # the chunker sizes chunks for this model: a mismatch is a config error
            raise PoisonInput(
                f"chunks {too_long[:5]} exceed {self.embedder.model}'s "
                f"{self.embedder.max_input_tokens}-token input limit"
            )
        texts = [c.text for c in batch.chunks]
        vectors = self.embedder.embed(texts) if texts else np.empty((0, self.embedder.dimensions))
        chunks = [
            EmbeddedChunk(**c.model_dump(), vector=encode_vector(v))
            for c, v in zip(batch.chunks, vectors, strict=True)
        ]
        out = VectorBatch(
            **batch.carried(),
            model=self.embedder.model,
            dimensions=self.embedder.dimensions,
            chunks=chunks,
        )
        done = WindowEmbedded(
            **batch.window_identity(),
            items=len(chunks),
            tokens=sum(c.tokens for c in batch.chunks),
        )
        return [out, done]


def make_stage(settings: Settings) -> Stage[ChunkBatch]:
    return Stage("embed", ChunkBatch, Embed(make_embedder(settings)))
