"""Following documents on the events topic (for `submit --wait`), with the tracker's own fold.

Each document's events are folded into a DocumentState exactly as the tracker folds them
(streams/fold.py). Done means the tracker's verdict: DocumentCompleted (indexed, counted,
searchable) or DocumentFailed (a stage's, or the tracker's own); WindowIndexed events only move
the progress bar.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from tenacity import retry, retry_if_exception, stop_after_delay, wait_exponential

from streams.fold import TrackedMessage, decode_tracked, fold
from streams.kafka_clients import admin_client, base_config
from streams.messages import DocumentCompleted, DocumentFailed, utc_now
from streams.settings import Settings
from streams.status import DocumentState, Phase
from streams.topics import topic_name

# Broker timestamps and our clock may differ slightly: start a little early, then filter.
_LOOKBACK_S = 5.0


@dataclass
class DocumentProgress:
    """One request of a document as folded from its events, and the verdict that ended it."""

    state: DocumentState
    completed: DocumentCompleted | None = None
    failure: DocumentFailed | None = None

    @classmethod
    def of_request(
        cls, tenant_id: str, document_id: str, submitted_at: datetime
    ) -> DocumentProgress:
        """Nothing folded yet; events of earlier requests will be ignored by the fold."""
        state = DocumentState(tenant_id=tenant_id, document_id=document_id,
                              submitted_at=submitted_at)  # fmt: skip
        return cls(state)

    @property
    def done(self) -> bool:
        return self.failure is not None or self.completed is not None

    @property
    def version(self) -> str | None:
        return self.state.version

    @property
    def window_count(self) -> int | None:
        return self.state.window_count

    @property
    def indexed(self) -> set[int]:
        return self.state.done("index")

    @property
    def chunks(self) -> int:
        """Searchable once completed; until then, what the indexed windows reported."""
        completed = self.state.phase == Phase.COMPLETED
        return self.state.chunks if completed else self.state.expected_chunks

    def apply(self, message: TrackedMessage, now: datetime) -> None:
        folded = fold(self.state, message, now)
        self.state = folded.state
        if not folded.changed:
            return
        if isinstance(message, DocumentCompleted) and self.state.phase == Phase.COMPLETED:
            self.completed = message
        elif isinstance(message, DocumentFailed) and self.state.phase == Phase.FAILED:
            self.failure = message


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
    progress = {d: DocumentProgress.of_request(tenant_id, d, at) for d, at in submitted.items()}
    deadline = time.monotonic() + timeout_s
    try:
        while not all(p.done for p in progress.values()) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None or msg.key() not in keys:
                continue
            document = keys[msg.key() or b""]
            message = _event(msg.value(), since=submitted[document])
            if message is not None:
                progress[document].apply(message, utc_now())
                on_update(progress[document])
    finally:
        consumer.close()
    return progress


def _event(value: bytes | None, since: datetime) -> TrackedMessage | None:
    """A record as an event of the request followed; None for anything else (an earlier
    request's event caught by the look-back, a record that is no tracked message)."""
    try:
        message = decode_tracked(value or b"")
    except ValueError:
        return None
    at: datetime | None = getattr(message, "at", None)
    return None if at is not None and at < since else message
