"""The embedding cache: content hash (model, dimensions, text) -> vector, kept in Weaviate.

Why Weaviate rather than a compacted Kafka topic: every embed replica must see every vector, and
a topic can only be looked up by reading all of it (memory growing with the corpus in each
replica, or a local store per replica). Weaviate is already there, persistent and shared; a
lookup is one filtered fetch by ids for a whole batch. The collection uses a flat vector index:
it is never searched by vector, so no HNSW graph is built or held in memory.

One Weaviate tenant per cache scope (a docstreams tenant, or ``shared``): one tenant never pays
less because another embedded the same text, unless EMBED_CACHE_SCOPE=global says they may.
Bounded by age and by count per scope, swept at most hourly by each embed process.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from weaviate.classes.config import Configure, DataType, Property
from weaviate.classes.data import DataObject
from weaviate.classes.query import Filter, Sort
from weaviate.exceptions import WeaviateBaseError

from streams.errors import DownstreamUnavailable
from streams.settings import Settings
from streams.vectors import Vector, vector
from streams.weaviate_clients import WeaviateAdapter

log = logging.getLogger(__name__)

SHARED_SCOPE = "shared"
# Ids per fetch (below Weaviate's QUERY_MAXIMUM_RESULTS): the client returns each vector as a
# list of Python floats (~12 KB at 384 dimensions), so a page is also the transient memory.
_LOOKUP_PAGE = 256
_SWEEP_EVERY_S = 3600.0


def cache_key(model: str, dimensions: int, text: str) -> uuid.UUID:
    digest = hashlib.sha256(f"{model}\x00{dimensions}\x00{text}".encode()).digest()
    return uuid.UUID(bytes=digest[:16], version=5)


class EmbeddingCache(Protocol):
    def scope(self, tenant_id: str) -> str:
        """Where a tenant's vectors are cached (its own scope, or the shared one)."""
        ...

    def get(self, scope: str, keys: Sequence[uuid.UUID]) -> dict[uuid.UUID, Vector]:
        """The cached vectors among ``keys``; raises DownstreamUnavailable if it cannot tell."""
        ...

    def put(self, scope: str, vectors: Mapping[uuid.UUID, Vector]) -> None: ...

    def close(self) -> None: ...


class WeaviateEmbeddingCache(WeaviateAdapter):
    settings: Settings

    # Both sections: the cache's policy (embed) and its collection's name (index).
    def __init__(self, settings: Settings, dimensions: int) -> None:
        self.settings = settings
        shared = "Shared" if settings.embed_cache_scope == "global" else ""
        # One collection per vector length: Weaviate fixes it with the first object.
        self.name = f"{settings.weaviate_collection}{shared}EmbeddingCache{dimensions}"
        self.max_age = timedelta(days=settings.embed_cache_max_age_days)
        self.max_objects = settings.embed_cache_max_objects
        self._ready = False
        self._swept: dict[str, float] = {}

    def scope(self, tenant_id: str) -> str:
        return SHARED_SCOPE if self.settings.embed_cache_scope == "global" else tenant_id

    def _ensure_collections(self) -> None:
        if self._ready:
            return
        if not self.client.collections.exists(self.name):
            try:
                self.client.collections.create(
                    self.name,
                    vector_config=Configure.Vectors.self_provided(
                        vector_index_config=Configure.VectorIndex.flat()
                    ),
                    multi_tenancy_config=Configure.multi_tenancy(
                        enabled=True, auto_tenant_creation=True, auto_tenant_activation=True
                    ),
                    properties=[Property(name="created_at", data_type=DataType.DATE)],
                )
            except WeaviateBaseError:
                if not self.client.collections.exists(self.name):  # else: a replica won
                    raise
        self._ready = True

    def _tenant(self, scope: str) -> Any:
        return self.client.collections.use(self.name).with_tenant(scope)

    def _has_tenant(self, scope: str) -> bool:
        return self.tenant_exists(self.name, scope)

    def get(self, scope: str, keys: Sequence[uuid.UUID]) -> dict[uuid.UUID, Vector]:
        if not keys:
            return {}
        try:
            self._ensure_collections()
            if not self._has_tenant(scope):  # nothing cached for it yet
                return {}
            found: dict[uuid.UUID, Vector] = {}
            collection = self._tenant(scope)
            for start in range(0, len(keys), _LOOKUP_PAGE):
                page = list(keys[start : start + _LOOKUP_PAGE])
                result = collection.query.fetch_objects(
                    filters=Filter.by_id().contains_any(page),
                    include_vector=True,
                    limit=len(page),
                    return_properties=[],
                )
                for o in result.objects:
                    found[o.uuid] = vector(o.vector["default"])
            return found
        except WeaviateBaseError as exc:
            # Embedding anyway could pay twice for what is cached: wait for Weaviate instead.
            raise DownstreamUnavailable(f"embedding cache unreachable: {exc}", 5.0) from None

    def put(self, scope: str, vectors: Mapping[uuid.UUID, Vector]) -> None:
        """Best effort: the vectors are paid for and flow on either way."""
        if not vectors:
            return
        try:
            self._ensure_collections()
            now = datetime.now(UTC)
            refused = self.insert_in_slices(
                self._tenant(scope),
                list(vectors),
                lambda key: DataObject(
                    uuid=key, vector=vectors[key].tolist(), properties={"created_at": now}
                ),
            )
            if refused:
                first = next(iter(refused.values()))
                log.warning("embedding cache: %d writes failed: %s", len(refused), first)
            self._sweep_if_due(scope)
        except (WeaviateBaseError, DownstreamUnavailable) as exc:
            log.warning("embedding cache: could not store %d vectors: %s", len(vectors), exc)

    def _sweep_if_due(self, scope: str) -> None:
        now = time.monotonic()
        if now - self._swept.get(scope, -_SWEEP_EVERY_S) < _SWEEP_EVERY_S:
            return
        self._swept[scope] = now
        self.sweep(scope)

    def sweep(self, scope: str) -> int:
        """Delete vectors older than the max age, then the oldest beyond the max count."""
        collection = self._tenant(scope)
        cutoff = datetime.now(UTC) - self.max_age
        deleted: int = collection.data.delete_many(
            where=Filter.by_property("created_at").less_than(cutoff)
        ).successful
        total = collection.aggregate.over_all(total_count=True).total_count or 0
        excess = total - self.max_objects
        while excess > 0:
            oldest = collection.query.fetch_objects(
                limit=min(excess, _LOOKUP_PAGE),
                sort=Sort.by_property("created_at", ascending=True),
                return_properties=[],
            )
            ids = [o.uuid for o in oldest.objects]
            if not ids:
                break
            gone = collection.data.delete_many(where=Filter.by_id().contains_any(ids))
            deleted += gone.successful
            excess -= len(ids)
        if deleted:
            log.info("embedding cache %s/%s: swept %d vectors", self.name, scope, deleted)
        return deleted


__all__ = ["SHARED_SCOPE", "EmbeddingCache", "WeaviateEmbeddingCache", "cache_key"]
