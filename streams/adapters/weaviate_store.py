"""The chunk index in Weaviate: one multi-tenant collection, one Weaviate tenant per tenant_id.

Objects are written with the chunk id as their uuid, so a replayed batch replaces instead of
duplicating. Every object's result is checked: a batch with any failure is not done.

A companion collection ``<name>Version`` holds one object per document: the version that is
current (complete and checked by the tracker). Search shows only chunks of current versions,
so while a new version is being indexed the old one stays the answer, and a half-indexed
version never shows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from weaviate.classes.config import Configure, DataType, Property, Tokenization
from weaviate.classes.data import DataObject
from weaviate.classes.query import Filter, MetadataQuery
from weaviate.exceptions import WeaviateBaseError, WeaviateConnectionError

from streams.errors import DownstreamUnavailable, TransientError
from streams.messages import EmbeddedChunk, VectorBatch
from streams.settings import IndexSettings
from streams.weaviate_clients import WeaviateAdapter

# Ids are matched whole: with the default word tokenization, a filter on "report-1" would also
# match "report-1-final".
_ID = Tokenization.FIELD
_PROPERTIES = [
    Property(name="tenant_id", data_type=DataType.TEXT, skip_vectorization=True, tokenization=_ID),
    Property(
        name="document_id", data_type=DataType.TEXT, skip_vectorization=True, tokenization=_ID
    ),
    Property(name="version", data_type=DataType.TEXT, skip_vectorization=True, tokenization=_ID),
    Property(name="window", data_type=DataType.INT),
    Property(name="chunk_index", data_type=DataType.INT),
    Property(name="page_start", data_type=DataType.INT),
    Property(name="page_end", data_type=DataType.INT),
    Property(name="start_s", data_type=DataType.NUMBER),  # audio/video: the chunk's time range
    Property(name="end_s", data_type=DataType.NUMBER),
    # Searchable (BM25, hybrid search) but not filterable: a roaring bitmap per word of every
    # chunk is indexing work no query uses.
    Property(name="text", data_type=DataType.TEXT, index_filterable=False),
    Property(name="filename", data_type=DataType.TEXT, skip_vectorization=True),
    Property(name="content_type", data_type=DataType.TEXT, skip_vectorization=True),
    Property(
        name="metadata_json",
        data_type=DataType.TEXT,
        skip_vectorization=True,
        index_filterable=False,
        index_searchable=False,
    ),  # an opaque JSON blob
]
_VERSION_PROPERTIES = [
    Property(
        name="document_id", data_type=DataType.TEXT, skip_vectorization=True, tokenization=_ID
    ),
    Property(name="version", data_type=DataType.TEXT, skip_vectorization=True, tokenization=_ID),
    Property(name="chunks", data_type=DataType.INT),
    Property(name="completed_at", data_type=DataType.DATE),
]
# Namespace of the version registry's object ids (one object per tenant/document).
_REGISTRY_NAMESPACE = uuid.UUID("5b0f3c1e-2a7d-4f7e-9a51-0d6c3f1b8e42")
# How many candidates a search looks at per wanted hit before giving up on finding current ones.
_SEARCH_OVERFETCH = 4


@dataclass(frozen=True)
class CurrentVersion:
    version: str
    chunks: int


@dataclass(frozen=True)
class Hit:
    document_id: str
    version: str
    page_start: int
    page_end: int
    text: str
    distance: float | None
    filename: str | None
    start_s: float | None = None  # audio/video
    end_s: float | None = None


class ChunkIndex(WeaviateAdapter):
    def __init__(self, settings: IndexSettings) -> None:
        self.settings = settings
        self.name = settings.weaviate_collection
        self._ready = False

    @property
    def registry_name(self) -> str:
        return f"{self.name}Version"

    def _ensure_collections(self) -> None:
        self.ensure_collection()

    def ensure_collection(self) -> None:
        if self._ready:
            return
        # HNSW's build cost is most of Weaviate's CPU while indexing; pgvector's defaults
        # (16 links, ef 64) halve Weaviate's (32, 128). Set when the collection is created.
        chunks_index = Configure.VectorIndex.hnsw(
            max_connections=self.settings.weaviate_hnsw_max_connections,
            ef_construction=self.settings.weaviate_hnsw_ef_construction,
        )
        for name, properties, index in (
            (self.name, _PROPERTIES, chunks_index),
            (self.registry_name, _VERSION_PROPERTIES, None),
        ):
            if self.client.collections.exists(name):
                continue
            try:
                self.client.collections.create(
                    name,
                    vector_config=Configure.Vectors.self_provided(vector_index_config=index),
                    multi_tenancy_config=Configure.multi_tenancy(
                        enabled=True, auto_tenant_creation=True, auto_tenant_activation=True
                    ),
                    properties=properties,
                )
            except WeaviateBaseError:
                if not self.client.collections.exists(name):  # else: a replica won the race
                    raise
        self._ready = True

    def upsert(self, batch: VectorBatch) -> int:
        """Write every chunk of the batch; raises unless Weaviate acknowledged each one."""
        if not batch.chunks:
            return 0
        try:
            self.ensure_collection()
            collection = self.client.collections.use(self.name).with_tenant(batch.tenant_id)
            metadata = orjson.dumps(batch.metadata).decode() if batch.metadata else ""
            refused = self.insert_in_slices(
                collection, batch.chunks, lambda chunk: _chunk_object(batch, chunk, metadata)
            )
        except WeaviateConnectionError as exc:
            raise DownstreamUnavailable(f"weaviate unreachable: {exc}", 5.0) from None
        except WeaviateBaseError as exc:
            if _looks_unavailable(exc):
                raise DownstreamUnavailable(f"weaviate unavailable: {exc}", 5.0) from None
            raise TransientError(f"weaviate write failed: {exc}") from None
        if refused:
            first = next(iter(refused.values()))
            message = (
                f"weaviate refused {len(refused)}/{len(batch.chunks)} objects: {first.message}"
            )
            if _looks_unavailable(first.message):
                raise DownstreamUnavailable(message, 5.0)
            raise TransientError(message)
        return len(batch.chunks)

    def count(self, tenant_id: str, document_id: str, version: str | None = None) -> int:
        self.ensure_collection()
        collection = self.client.collections.use(self.name).with_tenant(tenant_id)
        where = Filter.by_property("document_id").equal(document_id)
        if version:
            where = where & Filter.by_property("version").equal(version)
        with _translated_errors():  # the tracker waits out an outage on DownstreamUnavailable
            total = collection.aggregate.over_all(filters=where, total_count=True).total_count
        return int(total or 0)

    # --- versions ---------------------------------------------------------------------------
    def current(self, tenant_id: str, document_id: str) -> CurrentVersion | None:
        """The document's searchable version, or None if it has none (yet)."""
        return self.current_versions(tenant_id, [document_id]).get(document_id)

    def current_versions(
        self, tenant_id: str, document_ids: Iterable[str]
    ) -> dict[str, CurrentVersion]:
        wanted = sorted(set(document_ids))
        if not wanted:
            return {}
        with _translated_errors():
            self.ensure_collection()
            if not self._has_tenant(tenant_id):
                return {}
            registry = self.client.collections.use(self.registry_name).with_tenant(tenant_id)
            response = registry.query.fetch_objects(
                filters=Filter.by_property("document_id").contains_any(wanted), limit=len(wanted)
            )
        return {
            str(o.properties["document_id"]): CurrentVersion(
                str(o.properties["version"]), int(str(o.properties.get("chunks") or 0))
            )
            for o in response.objects
        }

    def make_current(self, tenant_id: str, document_id: str, version: str, chunks: int) -> None:
        """Switch search to ``version`` (one object write: atomic for readers)."""
        with _translated_errors():
            self.ensure_collection()
            registry = self.client.collections.use(self.registry_name).with_tenant(tenant_id)
            result = registry.data.insert_many(
                [
                    DataObject(
                        uuid=_registry_id(tenant_id, document_id),
                        properties={
                            "document_id": document_id,
                            "version": version,
                            "chunks": chunks,
                            "completed_at": datetime.now(UTC),
                        },
                    )
                ]
            )
        if result.errors:
            raise TransientError(f"weaviate refused the version switch: {result.errors}")

    def delete_chunks(self, tenant_id: str, document_id: str, except_version: str | None) -> int:
        """Delete the document's chunks (all, or all but one version); returns how many.

        Weaviate deletes at most QUERY_MAXIMUM_RESULTS objects per call, so this loops."""
        deleted = 0
        with _translated_errors():
            self.ensure_collection()
            if not self._has_tenant(tenant_id):
                return 0
            collection = self.client.collections.use(self.name).with_tenant(tenant_id)
            where = Filter.by_property("document_id").equal(document_id)
            if except_version:
                where = where & Filter.by_property("version").not_equal(except_version)
            while True:
                result = collection.data.delete_many(where=where)
                deleted += result.successful
                if result.failed:
                    raise TransientError(f"weaviate failed to delete {result.failed} objects")
                if result.matches == 0 or result.successful == 0:
                    return deleted

    def forget(self, tenant_id: str, document_id: str) -> int:
        """Delete a document entirely: its registry entry first (search stops showing it at
        once), then every chunk of every version."""
        with _translated_errors():
            self.ensure_collection()
            if self._has_tenant(tenant_id):
                registry = self.client.collections.use(self.registry_name).with_tenant(tenant_id)
                registry.data.delete_many(
                    where=Filter.by_property("document_id").equal(document_id)
                )
        return self.delete_chunks(tenant_id, document_id, except_version=None)

    def _has_tenant(self, tenant_id: str) -> bool:
        # Reading a tenant that was never written is an error in Weaviate, not an empty result.
        collection = self.client.collections.use(self.registry_name)
        return collection.tenants.get_by_name(tenant_id) is not None

    # --- search -----------------------------------------------------------------------------
    def search(self, tenant_id: str, vector: list[float], limit: int) -> list[Hit]:
        """The nearest chunks of current versions only (see the module docstring)."""
        with _translated_errors():
            self.ensure_collection()
            if not self._has_tenant(tenant_id):
                return []
            collection = self.client.collections.use(self.name).with_tenant(tenant_id)
            response = collection.query.near_vector(
                vector,
                limit=limit * _SEARCH_OVERFETCH,
                return_metadata=MetadataQuery(distance=True),
            )
        candidates = [_hit(o.properties, o.metadata.distance) for o in response.objects]
        current = self.current_versions(tenant_id, {h.document_id for h in candidates})
        hits = [
            h
            for h in candidates
            if h.document_id in current and current[h.document_id].version == h.version
        ]
        return hits[:limit]


def _chunk_object(batch: VectorBatch, chunk: EmbeddedChunk, metadata: str) -> Any:
    return DataObject(
        uuid=chunk.id,
        # Python floats (~12 KB at 384 dimensions): a slice's worth alive at once.
        vector=chunk.vector_values().tolist(),
        properties={
            "tenant_id": batch.tenant_id,
            "document_id": batch.document_id,
            "version": batch.version,
            "window": batch.window,
            "chunk_index": chunk.index,
            "page_start": chunk.page_start,
            "page_end": chunk.page_end,
            **(
                {"start_s": chunk.start_s, "end_s": chunk.end_s}
                if chunk.start_s is not None
                else {}
            ),
            "text": chunk.text,
            "filename": batch.filename or "",
            "content_type": batch.content_type,
            "metadata_json": metadata,
        },
    )


def _hit(props: Mapping[str, Any], distance: float | None) -> Hit:
    return Hit(
        document_id=str(props.get("document_id", "")),
        version=str(props.get("version", "")),
        page_start=int(props.get("page_start") or 0),
        page_end=int(props.get("page_end") or 0),
        text=str(props.get("text", "")),
        distance=distance,
        filename=str(props.get("filename") or "") or None,
        start_s=_seconds(props.get("start_s")),
        end_s=_seconds(props.get("end_s")),
    )


def _seconds(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _registry_id(tenant_id: str, document_id: str) -> uuid.UUID:
    return uuid.uuid5(_REGISTRY_NAMESPACE, f"{tenant_id}/{document_id}")


@contextmanager
def _translated_errors() -> Iterator[None]:
    """Weaviate errors as docstreams errors: down -> DownstreamUnavailable, else transient."""
    try:
        yield
    except WeaviateBaseError as exc:
        if isinstance(exc, WeaviateConnectionError) or _looks_unavailable(exc):
            raise DownstreamUnavailable(f"weaviate unavailable: {exc}", 5.0) from None
        raise TransientError(f"weaviate call failed: {exc}") from None


def _looks_unavailable(error: object) -> bool:
    text = str(error).lower()
    return any(s in text for s in ("unavailable", "connection refused", "deadline", "503", "502"))
