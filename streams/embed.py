"""embed: ChunkBatch -> VectorBatch + WindowEmbedded, through the configured Embedder.

Nothing is paid for twice: a text's vector is looked up in the embedding cache (model,
dimensions, text) before any request, identical texts in a batch are sent once, and every paid
request's vectors are cached as soon as they arrive, so a batch redone after a crash, a throttle
pause or a rebalance costs no tokens for what was already embedded.

The runner hands the stage each batch's messages first (``prepare``): their chunks are embedded
together, so requests are filled across windows up to the provider's limits. ``__call__`` then
only assembles each message's outputs; on its own (no prepare, or prepare failed) it embeds what
its message still lacks, which keeps a bad input's failure to that one message.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from streams import metrics
from streams.adapters.embedders import Embedder, LocalMiniLM, make_embedder
from streams.adapters.embedding_cache import EmbeddingCache, WeaviateEmbeddingCache, cache_key
from streams.errors import PoisonInput
from streams.messages import (
    ChunkBatch,
    EmbeddedChunk,
    Message,
    VectorBatch,
    WindowEmbedded,
    encode_vector,
)
from streams.pipeline import STAGE_SPECS, BatchStage
from streams.settings import Settings
from streams.vectors import Vector

Key = tuple[str, uuid.UUID]  # (cache scope, content hash)
V = TypeVar("V")


@dataclass(frozen=True)
class _Vector:
    values: Vector
    paid: bool  # embedded by this process for this batch (else: from the cache)


class Embed:
    def __init__(self, embedder: Embedder, cache: EmbeddingCache | None = None) -> None:
        self.embedder = embedder
        self.cache = cache
        self._vectors: dict[Key, _Vector] = {}  # this batch's, each dropped after its last use
        self._uses: Counter[Key] = Counter()  # this batch's messages yet to take each vector
        self._charged: set[Key] = set()  # paid texts already billed to a message
        self._keys: dict[tuple[str, str], Key] = {}  # this batch's (tenant, text) -> key
        self._in_batch = False

    def close(self) -> None:
        self.embedder.close()
        if self.cache is not None:
            self.cache.close()

    # --- the runner's batch ------------------------------------------------------------------
    def prepare(self, batches: Sequence[ChunkBatch]) -> None:
        """Embed all chunks of a runner batch together (full requests, one cache lookup)."""
        self._vectors.clear()
        self._charged.clear()
        self._keys.clear()
        self._uses = Counter(self._key(b.tenant_id, c.text) for b in batches for c in b.chunks)
        self._in_batch = True
        # If this fails (an input the provider refuses), the runner logs it and ``__call__``
        # embeds what each message still lacks, so the refusal stays that message's.
        self._fill([b for b in batches if not self._too_long(b)])

    def __call__(self, batch: ChunkBatch) -> list[Message]:
        if too_long := self._too_long(batch):
            # The chunker sizes chunks for this model: a mismatch is a config error.
            raise PoisonInput(
                f"chunks {too_long[:5]} exceed {self.embedder.model}'s "
                f"{self.embedder.max_input_tokens}-token input limit"
            )
        self._fill([batch])
        keys = [self._key(batch.tenant_id, c.text) for c in batch.chunks]
        vectors = [self._vectors[k].values for k in keys]
        tokens, cached, cached_tokens = 0, 0, 0
        charged: set[Key] = set()
        for key, chunk in zip(keys, batch.chunks, strict=True):
            if self._vectors[key].paid and key not in self._charged and key not in charged:
                tokens += chunk.tokens  # the first message with a paid text is billed for it
                charged.add(key)
            else:
                cached += 1
                cached_tokens += chunk.tokens
        self._charged |= charged
        chunks = [
            EmbeddedChunk(**c.model_dump(), vector=encode_vector(v))
            for c, v in zip(batch.chunks, vectors, strict=True)
        ]
        del vectors
        self._release(keys)
        out = VectorBatch(
            **batch.carried(),
            model=self.embedder.model,
            dimensions=self.embedder.dimensions,
            chunks=chunks,
        )
        done = WindowEmbedded(
            **batch.window_identity(),
            items=len(chunks),
            tokens=tokens,
            cached=cached,
            cached_tokens=cached_tokens,
        )
        return [out, done]

    def _release(self, keys: list[Key]) -> None:
        """Drop the vectors no message of the batch still needs: a batch's vectors do not all
        stay alive until its end, next to its encoded outputs."""
        if not self._in_batch:
            self._vectors.clear()
            self._charged.clear()
            self._keys.clear()
            return
        self._uses.subtract(keys)
        for key in keys:
            if self._uses[key] <= 0:
                self._vectors.pop(key, None)
                self._uses.pop(key, None)

    # --- embedding what is missing -----------------------------------------------------------
    def _key(self, tenant_id: str, text: str) -> Key:
        # Each chunk's key is asked for three times (uses, lookup, assembly): hashed once.
        key = self._keys.get((tenant_id, text))
        if key is None:
            scope = self.cache.scope(tenant_id) if self.cache else tenant_id
            key = scope, cache_key(self.embedder.model, self.embedder.dimensions, text)
            self._keys[tenant_id, text] = key
        return key

    def _too_long(self, batch: ChunkBatch) -> list[int]:
        return [c.index for c in batch.chunks if c.tokens > self.embedder.max_input_tokens]

    def _fill(self, batches: Sequence[ChunkBatch]) -> None:
        wanted: dict[Key, tuple[str, int]] = {}  # key -> (text, tokens), first occurrence
        for batch in batches:
            for chunk in batch.chunks:
                key = self._key(batch.tenant_id, chunk.text)
                if key not in self._vectors:
                    wanted.setdefault(key, (chunk.text, chunk.tokens))
        if not wanted:
            return
        self._look_up(list(wanted))
        missing = [k for k in wanted if k not in self._vectors]
        metrics.EMBED_CACHE_TOKENS.inc(
            sum(c.tokens for b in batches for c in b.chunks) - sum(wanted[k][1] for k in missing)
        )
        counts = [wanted[k][1] for k in missing]
        for start, end in self.embedder.request_bounds(counts):
            keys = missing[start:end]
            values = self.embedder.embed([wanted[k][0] for k in keys], counts[start:end])
            metrics.EMBED_PROVIDER_TOKENS.inc(sum(counts[start:end]))
            fresh = dict(zip(keys, values, strict=True))
            for key, vector in fresh.items():
                self._vectors[key] = _Vector(vector, paid=True)
            self._store(fresh)  # at once: a redo after a later request fails costs nothing

    def _look_up(self, keys: list[Key]) -> None:
        if self.cache is None:
            return
        for scope, digests in _by_scope(dict.fromkeys(keys)).items():
            found = self.cache.get(scope, list(digests))
            for digest, vector in found.items():
                self._vectors[(scope, digest)] = _Vector(vector, paid=False)
            metrics.EMBED_CACHE_LOOKUPS.labels("hit").inc(len(found))
            metrics.EMBED_CACHE_LOOKUPS.labels("miss").inc(len(digests) - len(found))

    def _store(self, fresh: dict[Key, Vector]) -> None:
        if self.cache is None:
            return
        for scope, vectors in _by_scope(fresh).items():
            self.cache.put(scope, vectors)


def _by_scope(entries: dict[Key, V]) -> dict[str, dict[uuid.UUID, V]]:
    """Entries keyed (scope, digest), grouped by scope: the cache is asked one scope at a time."""
    grouped: dict[str, dict[uuid.UUID, V]] = {}
    for (scope, digest), value in entries.items():
        grouped.setdefault(scope, {})[digest] = value
    return grouped


def make_stage(settings: Settings) -> BatchStage[ChunkBatch]:
    embedder = make_embedder(settings)
    if isinstance(embedder, LocalMiniLM):
        embedder.warm_up()
    cache = WeaviateEmbeddingCache(settings, embedder.dimensions) if settings.embed_cache else None
    if cache is not None:
        cache.prepare()
    embed = Embed(embedder, cache)
    return BatchStage(
        STAGE_SPECS["embed"],
        embed,
        close=embed.close,
        prepare=embed.prepare,
        gather_wait_s=settings.embed_gather_wait_s,
    )
