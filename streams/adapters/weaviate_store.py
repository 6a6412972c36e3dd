"""The chunk index in Weaviate: one multi-tenant collection, one Weaviate tenant per tenant_id.

Objects are written with the chunk id as their uuid, so a replayed batch replaces instead of
duplicating. Every object's result is checked: a batch with any failure is not done.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import orjson
import weaviate
from weaviate.classes.config import Configure, DataType, Property
from weaviate.classes.data import DataObject
from weaviate.classes.query import Filter, MetadataQuery
from weaviate.exceptions import WeaviateBaseError, WeaviateConnectionError

from streams.errors import DownstreamUnavailable, TransientError
from streams.messages import VectorBatch
from streams.settings import Settings
from streams.weaviate_clients import connect_weaviate

_PROPERTIES = [
    Property(name="tenant_id", data_type=DataType.TEXT, skip_vectorization=True),
    Property(name="document_id", data_type=DataType.TEXT, skip_vectorization=True),
    Property(name="version", data_type=DataType.TEXT, skip_vectorization=True),
    Property(name="window", data_type=DataType.INT),
    Property(name="chunk_index", data_type=DataType.INT),
    Property(name="page_start", data_type=DataType.INT),
    Property(name="page_end", data_type=DataType.INT),
    Property(name="text", data_type=DataType.TEXT),
    Property(name="filename", data_type=DataType.TEXT, skip_vectorization=True),
    Property(name="content_type", data_type=DataType.TEXT, skip_vectorization=True),
    Property(name="metadata_json", data_type=DataType.TEXT, skip_vectorization=True),
]


@dataclass(frozen=True)
class Hit:
    document_id: str
    version: str
    page_start: int
    page_end: int
    text: str
    distance: float | None
    filename: str | None


class ChunkIndex:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = settings.weaviate_collection
        self._ready = False

    @cached_property
    def client(self) -> weaviate.WeaviateClient:
        try:
            return connect_weaviate(self.settings)
        except WeaviateBaseError as exc:
            raise DownstreamUnavailable(f"weaviate unreachable: {exc}", 5.0) from None

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()

    def ensure_collection(self) -> None:
        if self._ready:
            return
        if not self.client.collections.exists(self.name):
            try:
                self.client.collections.create(
                    self.name,
                    vector_config=Configure.Vectors.self_provided(),
                    multi_tenancy_config=Configure.multi_tenancy(
                        enabled=True, auto_tenant_creation=True, auto_tenant_activation=True
                    ),
                    properties=_PROPERTIES,
                )
            except WeaviateBaseError:
                if not self.client.collections.exists(self.name):  # else: a replica won the race
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
            objects: list[Any] = [
                DataObject(
                    uuid=chunk.id,
                    vector=chunk.vector_values().tolist(),
                    properties={
                        "tenant_id": batch.tenant_id,
                        "document_id": batch.document_id,
                        "version": batch.version,
                        "window": batch.window,
                        "chunk_index": chunk.index,
                        "page_start": chunk.page_start,
                        "page_end": chunk.page_end,
                        "text": chunk.text,
                        "filename": batch.filename or "",
                        "content_type": batch.content_type,
                        "metadata_json": metadata,
                    },
                )
                for chunk in batch.chunks
            ]
            result = collection.data.insert_many(objects)
        except WeaviateConnectionError as exc:
            raise DownstreamUnavailable(f"weaviate unreachable: {exc}", 5.0) from None
        except WeaviateBaseError as exc:
            if _looks_unavailable(exc):
                raise DownstreamUnavailable(f"weaviate unavailable: {exc}", 5.0) from None
            raise TransientError(f"weaviate write failed: {exc}") from None
        if result.errors:
            first = next(iter(result.errors.values()))
            message = (
                f"weaviate refused {len(result.errors)}/{len(objects)} objects: {first.message}"
            )
            if _looks_unavailable(first.message):
                raise DownstreamUnavailable(message, 5.0)
            raise TransientError(message)
        return len(objects)

    def count(self, tenant_id: str, document_id: str, version: str | None = None) -> int:
        self.ensure_collection()
        collection = self.client.collections.use(self.name).with_tenant(tenant_id)
        where = Filter.by_property("document_id").equal(document_id)
        if version:
            where = where & Filter.by_property("version").equal(version)
        total = collection.aggregate.over_all(filters=where, total_count=True).total_count
        return int(total or 0)

    def search(self, tenant_id: str, vector: list[float], limit: int) -> list[Hit]:
        self.ensure_collection()
        collection = self.client.collections.use(self.name).with_tenant(tenant_id)
        response = collection.query.near_vector(
            vector, limit=limit, return_metadata=MetadataQuery(distance=True)
        )
        return [_hit(o.properties, o.metadata.distance) for o in response.objects]


def _hit(props: Mapping[str, Any], distance: float | None) -> Hit:
    return Hit(
        document_id=str(props.get("document_id", "")),
        version=str(props.get("version", "")),
        page_start=int(props.get("page_start") or 0),
        page_end=int(props.get("page_end") or 0),
        text=str(props.get("text", "")),
        distance=distance,
        filename=str(props.get("filename") or "") or None,
    )


def _looks_unavailable(error: object) -> bool:
    text = str(error).lower()
    return any(s in text for s in ("unavailable", "connection refused", "deadline", "503", "502"))
