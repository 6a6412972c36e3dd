"""The chunk index in Weaviate: one multi-tenant collection, one Weaviate tenant per tenant_id.

Objects are written with the chunk id as their uuid, so a replayed batch replaces instead of
duplicating. Every object's result is checked: a batch with any failure is not done.

Versions share objects. A chunk's id derives from its content and place (streams/chunk.py), so
an edited document's unchanged chunks keep their objects. A companion collection
``<name>Version`` holds one object per document, the registry of what is searchable:

- ``version``: the current version (complete and checked by the tracker);
- ``versions``: the versions that wrote objects the current one still has;
- ``windows_json``: each window's anchor, text digest and chunk count (what the next version
  compares against), and the ``fingerprint`` of how they were built.

An object is searchable when it was written by one of ``versions`` and the current version is
not in its ``dropped_by`` (the versions that no longer have it). A new version's objects, and
the marks on what it drops, stay invisible until the tracker writes the registry: one object
write, so the switch is atomic for readers; what was dropped is deleted after it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from weaviate.classes.config import Configure, DataType, Property, Tokenization
from weaviate.classes.data import DataObject
from weaviate.classes.query import Filter, HybridFusion, MetadataQuery
from weaviate.collections.classes.filters import _Filters
from weaviate.exceptions import WeaviateBaseError, WeaviateConnectionError

from streams.errors import DownstreamUnavailable, TransientError
from streams.messages import EmbeddedChunk, VectorBatch, content_key
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
    # Where the object was first written: not kept up to date when a later version reuses it.
    Property(name="window", data_type=DataType.INT),
    Property(name="chunk_index", data_type=DataType.INT),
    Property(name="anchor", data_type=DataType.TEXT, skip_vectorization=True, tokenization=_ID),
    Property(  # content_key(): how a later version finds the objects of chunks it still has
        name="content",
        data_type=DataType.TEXT,
        skip_vectorization=True,
        index_filterable=False,
        index_searchable=False,
    ),
    Property(
        name="dropped_by", data_type=DataType.TEXT_ARRAY, skip_vectorization=True, tokenization=_ID
    ),
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
    Property(
        name="versions", data_type=DataType.TEXT_ARRAY, skip_vectorization=True, tokenization=_ID
    ),
    Property(
        name="fingerprint", data_type=DataType.TEXT, skip_vectorization=True, tokenization=_ID
    ),
    Property(
        name="windows_json",
        data_type=DataType.TEXT,
        skip_vectorization=True,
        index_filterable=False,
        index_searchable=False,
    ),
]
_REGISTRY_SUMMARY = ["document_id", "version", "chunks", "versions", "fingerprint"]
# Namespace of the version registry's object ids (one object per tenant/document).
_REGISTRY_NAMESPACE = uuid.UUID("5b0f3c1e-2a7d-4f7e-9a51-0d6c3f1b8e42")
# How many candidates a search looks at per wanted hit before giving up on finding current ones.
_SEARCH_OVERFETCH = 4
# BM25 reads the chunk text only: filenames and ids would lift every chunk of a document alike.
_SEARCHED_TEXT = ["text"]


# Weaviate's default QUERY_MAXIMUM_RESULTS: the most objects one fetch returns.
_FETCH_LIMIT = 10_000


@dataclass(frozen=True)
class WindowRecord:
    """A window of a current version: its text digest, its chunks, and the anchors its
    objects carry (its own, or those of the windows it took over objects from)."""

    digest: str
    chunks: int
    sources: tuple[str, ...] = ()
    raw_digest: str | None = None  # PDF: its pages' bytes (see extractors.pdf_raw_digests)


@dataclass(frozen=True)
class CurrentVersion:
    """A document's registry entry (see the module docstring)."""

    version: str
    chunks: int
    versions: tuple[str, ...] = ()
    fingerprint: str | None = None
    windows: dict[str, WindowRecord] = field(default_factory=dict)

    def shows(self, version: str, dropped_by: Sequence[str] | None) -> bool:
        """Whether an object written by ``version`` and dropped by those is searchable."""
        return version in (self.versions or (self.version,)) and self.version not in (
            dropped_by or ()
        )


@dataclass(frozen=True)
class WindowWrite:
    """What indexing one window did: objects written, reused and marked dropped, and the
    anchors its objects carry."""

    written: int
    reused: int
    dropped: int
    sources: tuple[str, ...]


@dataclass(frozen=True, order=True)
class StoredObject:
    id: str
    version: str
    dropped_by: list[str]
    anchor: str
    content: str


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
    # Higher is better, on the mode's own scale: cosine similarity (vector), BM25 (keyword),
    # the fused relative score in [0, 1] (hybrid). Not comparable across modes.
    score: float | None = None


SearchMode = Literal["hybrid", "vector", "keyword"]


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
                self._add_missing(name, properties)  # made by an earlier release
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

    def _add_missing(self, name: str, properties: list[Property]) -> None:
        collection = self.client.collections.use(name)
        have = {p.name for p in collection.config.get().properties}
        for prop in properties:
            if prop.name not in have:
                try:
                    collection.config.add_property(prop)
                except WeaviateBaseError:
                    if prop.name not in {p.name for p in collection.config.get().properties}:
                        raise  # else: a replica added it first

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

    def index_window(self, batch: VectorBatch) -> WindowWrite:
        """Index one window of a version. Given objects to reuse (``reuse_from``: anchors of the
        current version's objects, each given to one window), a chunk whose content key one of
        them shows is not written; those it shows that the window no longer has are marked
        dropped by the new version. The rest is written under the chunks' own ids."""
        current = self.current(batch.tenant_id, batch.document_id) if batch.base_version else None
        if current is None or not batch.reuse_from:
            written = self.upsert(batch)
            return WindowWrite(written, 0, 0, (batch.anchor,) if written and batch.anchor else ())
        shown: dict[str, list[tuple[str, str]]] = {}  # content key -> [(id, anchor)]
        for found in self._objects_at(batch.tenant_id, batch.document_id, batch.reuse_from):
            if current.shows(found.version, found.dropped_by):
                shown.setdefault(found.content, []).append((found.id, found.anchor))
        fresh, sources = [], set()
        for chunk in batch.chunks:
            if reusable := shown.get(content_key(chunk)):
                sources.add(reusable.pop(0)[1])
            else:
                fresh.append(chunk)
        written = self.upsert(batch.model_copy(update={"chunks": fresh})) if fresh else 0
        if written and batch.anchor:
            sources.add(batch.anchor)
        gone = [object_id for left in shown.values() for object_id, _ in left]
        self._mark_dropped(batch.tenant_id, gone, batch.version)
        return WindowWrite(
            written, len(batch.chunks) - len(fresh), len(gone), tuple(sorted(sources))
        )

    def drop_anchors(
        self, tenant_id: str, document_id: str, anchors: Sequence[str], version: str
    ) -> int:
        """Mark every shown object under these anchors (which no window of ``version`` took
        over) as dropped by it; returns how many."""
        current = self.current(tenant_id, document_id)
        if current is None or not anchors:
            return 0
        gone = [
            found.id
            for found in self._objects_at(tenant_id, document_id, anchors)
            if current.shows(found.version, found.dropped_by)
        ]
        self._mark_dropped(tenant_id, gone, version)
        return len(gone)

    def _objects_at(
        self, tenant_id: str, document_id: str, anchors: Sequence[str]
    ) -> list[StoredObject]:
        """The document's objects under these anchors (of any version)."""
        with _translated_errors():
            self.ensure_collection()
            if not self._has_chunks_tenant(tenant_id):
                return []
            collection = self.client.collections.use(self.name).with_tenant(tenant_id)
            where = Filter.by_property("document_id").equal(document_id) & Filter.by_property(
                "anchor"
            ).contains_any(list(anchors))
            response = collection.query.fetch_objects(
                filters=where,
                limit=_FETCH_LIMIT,
                return_properties=["version", "dropped_by", "anchor", "content"],
            )
        if len(response.objects) >= _FETCH_LIMIT:
            raise TransientError(f"more than {_FETCH_LIMIT} objects under anchors {anchors[:3]}")
        return sorted(
            StoredObject(
                id=str(o.uuid),
                version=str(o.properties.get("version")),
                dropped_by=strings(o.properties.get("dropped_by")),
                anchor=str(o.properties.get("anchor")),
                content=str(o.properties.get("content")),
            )
            for o in response.objects
        )

    def _mark_dropped(self, tenant_id: str, object_ids: Iterable[str], version: str) -> None:
        """Add ``version`` to each object's dropped_by (a replay finds it there already)."""
        wanted = sorted(object_ids)
        if not wanted:
            return
        with _translated_errors():
            collection = self.client.collections.use(self.name).with_tenant(tenant_id)
            for start in range(0, len(wanted), 100):
                ids = wanted[start : start + 100]
                response = collection.query.fetch_objects(
                    filters=Filter.by_id().contains_any(ids),
                    limit=len(ids),
                    return_properties=["dropped_by"],
                )
                for o in response.objects:
                    marks = strings(o.properties.get("dropped_by"))
                    if version not in marks:
                        collection.data.update(
                            uuid=o.uuid, properties={"dropped_by": [*marks, version]}
                        )

    def count(self, tenant_id: str, document_id: str, version: str | None = None,
              versions: Sequence[str] = ()) -> int:  # fmt: skip
        """The document's objects; given a version, those it shows: written by it (or by one
        of ``versions``, the versions it reuses objects of) and not dropped by it."""
        self.ensure_collection()
        with _translated_errors():
            if not self._has_chunks_tenant(tenant_id):
                return 0
        collection = self.client.collections.use(self.name).with_tenant(tenant_id)
        where = Filter.by_property("document_id").equal(document_id)
        if version:
            where = where & Filter.by_property("version").contains_any(sorted({version, *versions}))
        with _translated_errors():  # the tracker waits out an outage on DownstreamUnavailable
            total = collection.aggregate.over_all(filters=where, total_count=True).total_count
            if version and total:
                dropped = where & Filter.by_property("dropped_by").contains_any([version])
                total -= (
                    collection.aggregate.over_all(filters=dropped, total_count=True).total_count
                    or 0
                )
        return int(total or 0)

    # --- versions ---------------------------------------------------------------------------
    def current(self, tenant_id: str, document_id: str) -> CurrentVersion | None:
        """The document's registry entry, with its windows; None if it has none (yet)."""
        return self.current_versions(tenant_id, [document_id], windows=True).get(document_id)

    def current_versions(
        self, tenant_id: str, document_ids: Iterable[str], windows: bool = False
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
                filters=Filter.by_property("document_id").contains_any(wanted),
                limit=len(wanted),
                return_properties=[*_REGISTRY_SUMMARY, *(["windows_json"] if windows else [])],
            )
        return {
            str(o.properties["document_id"]): _registry_entry(o.properties)
            for o in response.objects
        }

    def make_current(self, tenant_id: str, document_id: str, entry: CurrentVersion) -> None:
        """Switch search to ``entry.version`` (one object write: atomic for readers)."""
        windows = {
            a: [w.digest, w.chunks, list(w.sources), w.raw_digest] for a, w in entry.windows.items()
        }
        with _translated_errors():
            self.ensure_collection()
            registry = self.client.collections.use(self.registry_name).with_tenant(tenant_id)
            result = registry.data.insert_many(
                [
                    DataObject(
                        uuid=_registry_id(tenant_id, document_id),
                        properties={
                            "document_id": document_id,
                            "version": entry.version,
                            "chunks": entry.chunks,
                            "completed_at": datetime.now(UTC),
                            "versions": list(entry.versions or (entry.version,)),
                            "fingerprint": entry.fingerprint or "",
                            "windows_json": orjson.dumps(windows).decode() if windows else "",
                        },
                    )
                ]
            )
        if result.errors:
            raise TransientError(f"weaviate refused the version switch: {result.errors}")

    def remove_replaced(
        self, tenant_id: str, document_id: str, current: CurrentVersion | None = None
    ) -> int:
        """After a switch: delete the document's objects its current version does not show
        (dropped by it, or written by a version it does not reuse), and forget the versions
        whose objects are all gone. Returns the objects deleted. ``current``: the entry just
        made current, if the caller has it (else it is read)."""
        if current is None:
            current = self.current(tenant_id, document_id)
        if current is None:
            return 0
        versions = current.versions or (current.version,)
        not_shown = Filter.any_of([
            Filter.by_property("dropped_by").contains_any([current.version]),
            Filter.all_of([Filter.by_property("version").not_equal(v) for v in versions]),
        ])  # fmt: skip
        deleted = self._delete_where(tenant_id, document_id, not_shown)
        kept = tuple(
            v
            for v in versions
            if v == current.version or self._written_by(tenant_id, document_id, v)
        )
        if kept != versions:
            self.make_current(tenant_id, document_id, replace(current, versions=kept))
        return deleted

    def _written_by(self, tenant_id: str, document_id: str, version: str) -> bool:
        with _translated_errors():
            if not self._has_chunks_tenant(tenant_id):
                return False
            collection = self.client.collections.use(self.name).with_tenant(tenant_id)
            where = Filter.by_property("document_id").equal(document_id) & Filter.by_property(
                "version"
            ).equal(version)
            return bool(collection.aggregate.over_all(filters=where, total_count=True).total_count)

    def _delete_where(self, tenant_id: str, document_id: str, where: _Filters | None) -> int:
        """Delete the document's objects that match; returns how many. Weaviate deletes at
        most QUERY_MAXIMUM_RESULTS objects per call, so this loops."""
        deleted = 0
        with _translated_errors():
            self.ensure_collection()
            if not self._has_chunks_tenant(tenant_id):
                return 0
            collection = self.client.collections.use(self.name).with_tenant(tenant_id)
            mine = Filter.by_property("document_id").equal(document_id)
            while True:
                result = collection.data.delete_many(where=mine & where if where else mine)
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
        return self._delete_where(tenant_id, document_id, None)

    def _has_tenant(self, tenant_id: str) -> bool:
        return self.tenant_exists(self.registry_name, tenant_id)

    def _has_chunks_tenant(self, tenant_id: str) -> bool:
        # Not implied by the registry's: a tenant whose documents so far had no text has a
        # registry entry but has never had a chunk object written.
        return self.tenant_exists(self.name, tenant_id)

    # --- search -----------------------------------------------------------------------------
    def search(
        self,
        tenant_id: str,
        vector: list[float] | None,
        limit: int,
        *,
        text: str | None = None,
        mode: SearchMode = "vector",
        alpha: float = 0.5,
    ) -> list[Hit]:
        """The best chunks of current versions only (see the module docstring).

        - ``vector``: nearest to ``vector`` (the query's embedding);
        - ``keyword``: BM25 on the chunk text for ``text``;
        - ``hybrid``: both, fused by relative score; ``alpha`` weighs the vector side (1 is
          vector only, 0 keyword only). Exact phrases, names and numbers are where vectors miss.
        """
        if mode != "keyword" and vector is None:
            raise ValueError(f"{mode} search needs the query's vector")
        if mode != "vector" and not (text and text.strip()):
            raise ValueError(f"{mode} search needs the query's text")
        with _translated_errors():
            self.ensure_collection()
            if not self._has_chunks_tenant(tenant_id):
                return []
            collection = self.client.collections.use(self.name).with_tenant(tenant_id)
            fetch = limit * _SEARCH_OVERFETCH  # room for objects of versions no longer shown
            if mode == "vector" and vector is not None:  # (checked above)
                response = collection.query.near_vector(
                    vector, limit=fetch, return_metadata=MetadataQuery(distance=True)
                )
            elif mode == "keyword":
                response = collection.query.bm25(
                    text or "",
                    query_properties=_SEARCHED_TEXT,
                    limit=fetch,
                    return_metadata=MetadataQuery(score=True),
                )
            else:
                response = collection.query.hybrid(
                    text or "",
                    vector=vector,
                    alpha=alpha,
                    query_properties=_SEARCHED_TEXT,
                    fusion_type=HybridFusion.RELATIVE_SCORE,
                    limit=fetch,
                    return_metadata=MetadataQuery(score=True),
                )
        found = [(o.properties, o.metadata) for o in response.objects]
        current = self.current_versions(tenant_id, {str(p["document_id"]) for p, _ in found})
        hits = [
            replace(
                _hit(props, meta.distance, meta.score),
                version=entry.version,  # the document's version, not the object's first
            )
            for props, meta in found
            if (entry := current.get(str(props["document_id"]))) is not None
            and entry.shows(str(props.get("version")), strings(props.get("dropped_by")))
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
            **({"anchor": batch.anchor} if batch.anchor else {}),
            "content": content_key(chunk),
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


def _hit(props: Mapping[str, Any], distance: float | None, score: float | None) -> Hit:
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
        score=score if distance is None else 1 - distance,
    )


def _seconds(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def strings(value: object) -> list[str]:
    """A text-array property as read back (absent on objects of an earlier release)."""
    return [str(v) for v in value] if isinstance(value, list) else []


def _registry_entry(props: Mapping[str, Any]) -> CurrentVersion:
    """A registry object as written by this release or an earlier one (version, chunks only:
    its objects are shown by version alone, and nothing is reused from it)."""
    windows = orjson.loads(props["windows_json"]) if props.get("windows_json") else {}
    return CurrentVersion(
        version=str(props["version"]),
        chunks=int(props.get("chunks") or 0),
        versions=tuple(strings(props.get("versions"))),
        fingerprint=props.get("fingerprint") or None,
        windows={
            anchor: WindowRecord(
                str(record[0]),
                int(record[1]),
                tuple(record[2]),
                record[3] if len(record) > 3 else None,
            )
            for anchor, record in windows.items()
        },
    )


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
