"""Running `docstreams run all` (every stage and the tracker, each its own process) in tests,
submitting documents to it and reading what it made of them (vectors, Weaviate objects)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from weaviate.classes.query import Filter

from docstreams_dev.apps import app_process as app_process
from docstreams_dev.apps import running_apps as running_apps
from docstreams_dev.stack.ports import free_port_block as free_port_block
from streams.messages import VectorBatch
from streams.pipeline import APPS
from streams.producer import submit
from streams.progress import DocumentProgress, follow
from streams.settings import Settings
from streams.weaviate_clients import connect_weaviate
from tests.kafka_helpers import batch_of, read_records
from tests.pdfs import ROOT

TENANT = "acme"


def app_url(settings: Settings, name: str) -> str:
    """Where one app of `run all` serves /metrics, /readyz and /resume: its ports are numbered
    from METRICS_PORT in APPS order."""
    assert settings.metrics_port is not None
    return f"http://127.0.0.1:{settings.metrics_port + APPS.index(name)}"


def isolated(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory, name: str, **changes: Any
) -> Settings:
    """The session stack's settings with topics, a Weaviate collection and a blob store of a
    test module's own (local sources from the test's temporary folders and the checkout), plus
    ``changes``."""
    run = uuid.uuid4().hex[:8]
    return stack_settings.model_copy(
        update={
            "topic_prefix": f"{name}{run}.",
            "weaviate_collection": f"{name.capitalize()}{run}",
            "blob_dir": tmp_path_factory.mktemp("blobs"),
            "local_source_roots": [tmp_path_factory.getbasetemp(), ROOT],
            **changes,
        }
    )


def submit_and_wait(
    settings: Settings,
    source: str,
    document_id: str,
    tenant: str = TENANT,
    timeout_s: float = 240,
    **request: object,
) -> DocumentProgress:
    """Submit a document (``request``: more fields of the DocumentSubmitted) and follow its
    events until it is completed or failed."""
    submitted = submit(settings, source, tenant, document_id, **request)
    return follow(settings, tenant, document_id, submitted.submitted_at, timeout_s=timeout_s)


def vector_batches(
    settings: Settings, document_id: str, isolation: str = "read_committed"
) -> list[tuple[str | None, VectorBatch]]:
    """A document's VectorBatches on the vectors topic, each with the runner batch that wrote
    it; ``read_uncommitted`` also shows those of aborted and open transactions."""
    return [
        (batch_of(record), vectors)
        for record in read_records(settings, "vectors", isolation)
        if (vectors := VectorBatch.from_wire(record.value() or b"")).document_id == document_id
    ]


def embedded_chunk_ids(
    settings: Settings, document_id: str, version: str | None = None
) -> list[str]:
    """The chunk ids of a document's committed vectors (of one version, if given), as often as
    each is on the vectors topic."""
    return [
        chunk.id
        for _, vectors in vector_batches(settings, document_id)
        if version is None or vectors.version == version
        for chunk in vectors.chunks
    ]


def indexed_chunk_ids(
    settings: Settings, document_id: str, version: str | None = None, tenant: str = TENANT
) -> list[str]:
    """The ids of a document's chunk objects in Weaviate (of one version, if given)."""
    where = Filter.by_property("document_id").equal(document_id)
    if version is not None:
        where = where & Filter.by_property("version").equal(version)
    limit = 10_000  # Weaviate's default most results of one query
    with connect_weaviate(settings) as client:
        collection = client.collections.use(settings.weaviate_collection).with_tenant(tenant)
        found = collection.query.fetch_objects(filters=where, limit=limit, return_properties=[])
    assert len(found.objects) < limit, "more objects than one query returns"
    return [str(o.uuid) for o in found.objects]


def indexed_count(
    settings: Settings, document_id: str, version: str | None = None, tenant: str = TENANT
) -> int:
    """How many chunk objects of a document (of one version, if given) Weaviate holds."""
    return len(indexed_chunk_ids(settings, document_id, version, tenant))
