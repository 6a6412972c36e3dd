"""Following one document's progress on the events topic (for `submit --wait`).

Done means the tracker's verdict: DocumentCompleted (indexed, counted, searchable) or
DocumentFailed; WindowIndexed events only move the progress bar.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from tenacity import retry, retry_if_exception, stop_after_delay, wait_exponential

from streams.kafka_clients import admin_client, base_config
from streams.messages import DocumentCompleted, DocumentFailed, DocumentPlanned, WindowIndexed
from streams.settings import Settings
from streams.topics import topic_name

# Broker timestamps and our clock may differ slightly: start a little early, then filter.
_LOOKBACK_S = 5.0


@dataclass
class DocumentProgress:
    version: str | None = None
    window_count: int | None = None
    indexed: set[int] = field(default_factory=set)
    chunks: int = 0
    failure: DocumentFailed | None = None
    completed: DocumentCompleted | None = None
    submitted_at: datetime | None = None  # the request followed

    @property
    def done(self) -> bool:
        return self.failure is not None or self.completed is not None

    def apply(self, event: dict[str, object], raw: bytes) -> None:
        kind = event.get("type")
        if kind == "DocumentPlanned":
            planned = DocumentPlanned.from_wire(raw)
            if planned.version != self.version:
                self.indexed.clear()
                self.chunks = 0
            self.version, self.window_count = planned.version, planned.window_count
        elif kind == "WindowIndexed":
            done = WindowIndexed.from_wire(raw)
            if done.version == self.version and done.window not in self.indexed:
                self.indexed.add(done.window)  # a set: replayed events count once
                self.chunks += done.items
        elif kind == "DocumentFailed":
            self.failure = DocumentFailed.from_wire(raw)
        elif kind == "DocumentCompleted":
            completed = DocumentCompleted.from_wire(raw)
            if self.submitted_at is not None and completed.submitted_at != self.submitted_at:
                return  # the tracker finishing an earlier request of this document
            self.completed = completed
            self.version, self.chunks = completed.version, completed.chunks


def follow(
    settings: Settings,
    tenant_id: str,
    document_id: str,
    since: datetime,
    timeout_s: float,
    on_update: Callable[[DocumentProgress], None] = lambda _: None,
) -> DocumentProgress:
    """Fold the document's events from ``since`` on until it is completed or failed."""
    return follow_all(settings, tenant_id, {document_id: since}, timeout_s, on_update)[document_id]


# Errors of an offsets lookup on a topic that has just been made, until its leader is known.
_SETTLING = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._UNKNOWN_PARTITION,
}


def _settling(exc: BaseException) -> bool:
    """A lookup that fails only until a just-made topic has its leader (librdkafka does not mark
    these retriable when they come from an offsets query)."""
    if not isinstance(exc, KafkaException):
        return False
    error = exc.args[0]
    return bool(error.retriable()) or error.code() in _SETTLING


@retry(
    retry=retry_if_exception(_settling),
    stop=stop_after_delay(30),
    wait=wait_exponential(multiplier=0.1, max=2),
    reraise=True,
)
def _start_offsets(
    settings: Settings, consumer: Consumer, topic: str, since: datetime
) -> list[TopicPartition]:
    """Where to start reading each partition: the first event at or after ``since`` (less the
    look-back), else the partition's end."""
    partitions = admin_client(settings).list_topics(topic, timeout=10).topics[topic].partitions
    start_ms = int((since.timestamp() - _LOOKBACK_S) * 1000)
    # Each partition's end, taken before the time lookup: a partition with nothing at or after
    # ``since`` yet starts there, so an event written between the lookup and the assignment is
    # not skipped (OFFSET_END would be resolved later, after such an event).
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1] for p in partitions}
    wanted = [TopicPartition(topic, p, start_ms) for p in partitions]
    found = consumer.offsets_for_times(wanted, timeout=10)
    return [TopicPartition(topic, t.partition, t.offset if t.offset >= 0 else ends[t.partition])
            for t in found]  # fmt: skip


def follow_all(
    settings: Settings,
    tenant_id: str,
    submitted: dict[str, datetime],
    timeout_s: float,
    on_update: Callable[[DocumentProgress], None] = lambda _: None,
) -> dict[str, DocumentProgress]:
    """Follow several documents (document id -> its request's submitted_at) until each is
    completed or failed, or the time is up."""
    topic = topic_name(settings, "events")
    consumer = Consumer(
        {
            **base_config(settings),
            "group.id": f"follow-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    since = min(submitted.values())
    # Retried while the cluster settles (a topic just made may have no leader yet).
    consumer.assign(_start_offsets(settings, consumer, topic, since))
    keys = {f"{tenant_id}/{d}".encode(): d for d in submitted}
    progress = {d: DocumentProgress(submitted_at=at) for d, at in submitted.items()}
    deadline = time.monotonic() + timeout_s
    try:
        while not all(p.done for p in progress.values()) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None or msg.key() not in keys:
                continue
            document = keys[msg.key() or b""]
            raw = msg.value() or b"{}"
            event = orjson.loads(raw)
            if datetime.fromisoformat(str(event.get("at"))) < submitted[document]:
                continue  # an earlier submission's event, caught by the look-back
            progress[document].apply(event, raw)
            on_update(progress[document])
    finally:
        consumer.close()
    return progress
