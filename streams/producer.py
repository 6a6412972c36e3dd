"""Publishing requests to the ingest topic (used by `docstreams submit|delete` and callers)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from confluent_kafka import Producer

from streams.errors import DocstreamsError
from streams.kafka_clients import producer_config
from streams.messages import DeleteRequested, DocumentMessage, DocumentSubmitted
from streams.settings import KafkaSettings
from streams.topics import topic_name


def default_document_id(source: str) -> str:
    """A stable id from the source: its file name plus a short hash of the whole source."""
    name = Path(source.split("?", 1)[0].rstrip("/")).name or "document"
    safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in name)[:80].lstrip("._-")
    return f"{safe or 'document'}-{hashlib.sha256(source.encode()).hexdigest()[:12]}"


def submit(
    settings: KafkaSettings,
    source: str,
    tenant_id: str,
    document_id: str | None = None,
    **fields: object,
) -> DocumentSubmitted:
    request = DocumentSubmitted.model_validate(
        {
            "tenant_id": tenant_id,
            "document_id": document_id or default_document_id(source),
            "source": source,
            **{k: v for k, v in fields.items() if v is not None},
        }
    )
    _publish(settings, request)
    return request


def request_delete(settings: KafkaSettings, tenant_id: str, document_id: str) -> DeleteRequested:
    request = DeleteRequested(tenant_id=tenant_id, document_id=document_id)
    _publish(settings, request)
    return request


def _publish(settings: KafkaSettings, request: DocumentMessage) -> None:
    # Not idempotent: an idempotent producer first waits for its producer id, and librdkafka
    # asks for one on a 500 ms timer (measured: 0.51 s per submit against 0.008 s). That buys
    # nothing for one record: the worst case is the same request twice after a lost ack, and a
    # repeated request is harmless (same version: the same chunk ids, the embedding cache).
    producer = Producer({**producer_config(settings), "enable.idempotence": False, "acks": "all"})
    producer.produce(
        topic_name(settings, "ingest"), key=request.kafka_key(), value=request.to_wire()
    )
    if producer.flush(30):
        raise DocstreamsError("the ingest topic did not acknowledge the request within 30 s")
