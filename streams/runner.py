"""The runner: the only code in docstreams that touches Kafka offsets.

A stage is a plain function ``handle(message) -> messages``. The runner feeds it records in bounded
batches and makes each batch one Kafka transaction: every output message, every dead letter and
the input offsets commit together or not at all (KIP-447: one transactional producer per process,
fenced through the consumer group metadata). A crash therefore redoes at most the batch in
flight, and read_committed consumers downstream never see its half-written outputs.

Errors are data, classified here and nowhere else:
  - bad bytes or PoisonInput            -> DeadLetter + DocumentFailed, in the same transaction
  - any other exception                 -> retried with backoff, then dead-lettered
  - DownstreamUnavailable               -> abort, rewind, pause the partitions, try again later
  - abortable Kafka transaction errors  -> abort, rewind, go on
  - fatal Kafka errors (fenced, ...)    -> FatalRunnerError: the process exits
"""

from __future__ import annotations

import base64
import contextlib
import faulthandler
import logging
import os
import random
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from pydantic import ValidationError

from streams import metrics
from streams.errors import DownstreamUnavailable, FatalRunnerError, PoisonInput, ProviderRefused
from streams.health import Health
from streams.kafka_clients import base_config, producer_config
from streams.memory import release_free_memory
from streams.messages import DeadLetter, DocumentFailed, InvalidWireMessage
from streams.messages import Message as WireMessage
from streams.pipeline import TOPICS, BatchStage, Stage
from streams.settings import Settings
from streams.topics import topic_name

log = logging.getLogger(__name__)

In = TypeVar("In", bound=WireMessage)

# Room for the record envelope on top of a topic's max.message.bytes.
_ENVELOPE_BYTES = 1024
# Every record a batch produces carries its batch's id (transactional id / process start /
# sequence): which outputs were written together, and which batches were redone after an abort.
BATCH_HEADER = "docstreams-batch"
_MAX_RETRY_SLEEP_S = 30.0
_KAFKA_CALL_ATTEMPTS = 5


@dataclass
class _Batch:
    records: list[Message]
    first_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for record in self.records:
            tp = (record.topic() or "", record.partition() or 0)
            offset = record.offset() or 0
            self.first_offsets.setdefault(tp, offset)
            self.next_offsets[tp] = offset + 1


class Runner(Generic[In]):
    def __init__(self, stage: Stage[In], settings: Settings) -> None:
        self.stage = stage
        self.settings = settings
        self.input_topic = topic_name(settings, stage.spec.input_topic)
        self.group_id = f"{settings.topic_prefix}{stage.name}"
        instance = settings.instance_id or f"{socket.gethostname()}-{os.getpid()}"
        self.transactional_id = f"{self.group_id}-{instance}"
        self._limits = {
            topic_name(settings, t.key): t.max_message_bytes - _ENVELOPE_BYTES for t in TOPICS
        }
        self._stop = threading.Event()
        self._paused_until = 0.0
        # The batch in flight's events and dead letters, for its metrics once committed (not
        # its work messages: a batch's pages or vectors are not kept past their encoding).
        self._batch_events: list[WireMessage] = []
        self._in_transaction = False  # the batch in flight's transaction has begun
        self._started = int(time.time())
        self._batches = 0
        # Live while the loop turns; a batch may take up to the transaction timeout.
        self.health = Health(stall_after_s=settings.transaction_timeout_s * 2)

    # --- lifecycle -------------------------------------------------------------------------
    def stop(self) -> None:
        """Finish the batch in flight, commit it, leave the group. Safe from signal handlers."""
        self._stop.set()

    def _watchdog(self) -> None:
        """Exit if the loop stops turning (e.g. a Kafka call that never returns after its
        transaction was rolled back by the coordinator): a restarted process fences the stuck
        one's transaction and goes on, where a stuck one would hold its partitions forever.
        (On Kubernetes the liveness probe does the same; locally nothing else would.)"""
        while not self._stop.wait(5.0):
            if not self.health.live():
                log.critical("%s: no progress for %.0fs; exiting to be restarted (stacks follow)",
                             self.stage.name, self.health.stall_after_s)  # fmt: skip
                faulthandler.dump_traceback(all_threads=True)  # where it was stuck, for the logs
                logging.shutdown()
                os._exit(70)

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())

    def run(self) -> None:
        threading.Thread(target=self._watchdog, daemon=True, name="watchdog").start()
        with ExitStack() as resources:
            self.consumer = Consumer(self._consumer_config())
            resources.callback(self.consumer.close)  # leaves the group: a fast rebalance
            self.producer = Producer(self._producer_config())
            resources.callback(self.producer.flush, 10)
            self.producer.init_transactions(self.settings.transaction_timeout_s)
            self.health.producer_ready = True
            self.consumer.subscribe(
                [self.input_topic], on_assign=self._on_assign, on_revoke=self._on_revoke
            )
            log.info("%s: consuming %s as %s", self.stage.name, self.input_topic, self.group_id)
            while not self._stop.is_set():
                self.health.beat()
                self._resume_if_due()
                batch = _Batch([r for r in self._next_records() if self._usable(r)])
                if batch.records:
                    self._process(batch)
                    # Before waiting for the next records: the batch's records go, and the C
                    # heap's pages it freed go back to the system (glibc keeps them otherwise,
                    # and each batch would start from the last one's peak).
                    del batch
                    release_free_memory()

    def _next_records(self) -> list[Message]:
        """Wait (up to a second) for one record; then take what else arrives within
        BATCH_MAX_WAIT_S: a lone document is not held back. A stage with a longer gather wait
        (embed: fuller requests) waits for more only when that short wait brought some: the
        topic is busy, so more is on its way."""
        first = self.consumer.poll(1.0)
        if first is None:
            return []
        limit = self.settings.batch_max_messages - 1
        records = [first, *self.consumer.consume(limit, self.settings.batch_max_wait_s)]
        gather = self.stage.gather_wait_s if isinstance(self.stage, BatchStage) else None
        if gather is not None and len(records) > 1 and len(records) <= limit:
            records += self.consumer.consume(limit + 1 - len(records), gather)
        return records

    # --- one batch = one transaction --------------------------------------------------------
    def _process(self, batch: _Batch) -> None:
        started = time.monotonic()
        self._batch_events = []
        self._batches += 1
        self._in_transaction = False
        headers: list[tuple[str, str | bytes | None]] = [
            (BATCH_HEADER, f"{self.transactional_id}/{self._started}/{self._batches}".encode())
        ]
        produced: Counter[tuple[str, str]] = Counter()
        # The work first, the transaction after: it then lasts only as long as producing and
        # committing, however slow the stage (an embedding batch can take minutes), so it never
        # runs into transaction.timeout.ms (which would fence this producer, again on every
        # retry) and read_committed consumers downstream wait for it only briefly.
        # A stage that prepares the whole batch (embed) has done its slow work in prepare: its
        # transaction starts then, and each message's outputs are produced as soon as they are
        # made, so a batch's outputs are never all held at once.
        # Decoded one at a time unless the stage prepares the whole batch: one decoded window
        # alive at a time, not batch_max_messages of them.
        decoded: list[In | Exception | None] | None = None
        if isinstance(self.stage, BatchStage):
            decoded = [self._decode(record) for record in batch.records]
        try:
            try:
                if decoded is not None:
                    self._prepare(
                        [m for m in decoded if m is not None and not isinstance(m, Exception)]
                    )
                outputs: list[tuple[str, bytes, bytes, str]] = []
                for done, record in enumerate(batch.records):
                    if done and time.monotonic() - started > self.settings.batch_max_seconds:
                        # Enough for one transaction: commit these, take up the rest next time.
                        batch = self._put_back(batch, done)
                        break
                    message = decoded[done] if decoded is not None else self._decode(record)
                    if decoded is not None:
                        decoded[done] = None  # handled: let it go
                    assert message is not None
                    outputs += self._outputs(record, message)
                    del message
                    if decoded is not None:
                        self._produce_all(outputs, headers, produced)
                    self.health.beat()
            except DownstreamUnavailable as exc:
                why = f"downstream unavailable: {exc}"
                if self._in_transaction:
                    self._abort_and_rewind(batch, why)
                else:
                    self._rewind(batch, why)
                self._pause(exc.retry_after_s, str(exc))
                if isinstance(exc, ProviderRefused):  # wherever raised (the parser child too)
                    metrics.PROVIDER_REFUSED.labels(self.stage.name).set(1)
                return
            metrics.PROVIDER_REFUSED.labels(self.stage.name).set(0)
            self._produce_all(outputs, headers, produced)
        except BaseException:
            if self._in_transaction:
                self._abort_and_rewind(batch, "unexpected error")
            raise
        if self._commit(batch):
            for (topic, kind), count in produced.items():
                metrics.MESSAGES_OUT.labels(self.stage.name, topic, kind).inc(count)
            metrics.count_committed(self.stage.name, self._batch_events)
            metrics.RECORDS_IN.labels(self.stage.name).inc(len(batch.records))
        metrics.BATCH_SECONDS.labels(self.stage.name).observe(time.monotonic() - started)

    def _produce_all(
        self,
        outputs: list[tuple[str, bytes, bytes, str]],
        headers: list[tuple[str, str | bytes | None]],
        produced: Counter[tuple[str, str]],
    ) -> None:
        """Produce ``outputs`` (emptying the list) in the batch's transaction, begun if need be.
        Each value goes as soon as librdkafka holds its own copy."""
        if not self._in_transaction:
            self._kafka_call(self.producer.begin_transaction)
            self._in_transaction = True
        outputs.reverse()
        while outputs:
            topic, key, value, kind = outputs.pop()
            self._produce(topic, key, value, headers)
            produced[(topic, kind)] += 1

    def _commit(self, batch: _Batch) -> bool:
        """1. offsets into the transaction  2. commit (flushes outputs)  3. on abortable errors:
        abort, rewind, and let the batch be consumed again."""
        offsets = [TopicPartition(t, p, o) for (t, p), o in batch.next_offsets.items()]
        try:
            self._kafka_call(
                self.producer.send_offsets_to_transaction,
                offsets,
                self.consumer.consumer_group_metadata(),
                self.settings.transaction_timeout_s,
            )
            self._kafka_call(self.producer.commit_transaction, self.settings.transaction_timeout_s)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.txn_requires_abort():
                self._abort_and_rewind(batch, str(error))
                return False
            raise FatalRunnerError(f"{self.stage.name}: commit failed: {error}") from exc
        metrics.TRANSACTIONS.labels(self.stage.name, "committed").inc()
        return True

    def _abort_and_rewind(self, batch: _Batch, why: str) -> None:
        try:
            self._kafka_call(self.producer.abort_transaction, self.settings.transaction_timeout_s)
        except KafkaException as exc:
            raise FatalRunnerError(f"{self.stage.name}: abort failed: {exc}") from exc
        self._in_transaction = False
        metrics.TRANSACTIONS.labels(self.stage.name, "aborted").inc()
        self._rewind(batch, why)

    def _put_back(self, batch: _Batch, done: int) -> _Batch:
        """Keep the first ``done`` records in the batch; seek back to the others."""
        rest = _Batch(batch.records[done:])
        for (topic, partition), offset in rest.first_offsets.items():
            with contextlib.suppress(KafkaException):
                self.consumer.seek(TopicPartition(topic, partition, offset))
        return _Batch(batch.records[:done])

    def _rewind(self, batch: _Batch, why: str) -> None:
        log.warning("%s: redoing a batch of %d later: %s", self.stage.name, len(batch.records), why)
        for (topic, partition), offset in batch.first_offsets.items():
            # Revoked meanwhile: its new owner starts from the committed offset anyway.
            with contextlib.suppress(KafkaException):
                self.consumer.seek(TopicPartition(topic, partition, offset))

    def _prepare(self, messages: list[In]) -> None:
        assert isinstance(self.stage, BatchStage)
        try:
            self.stage.prepare(messages)
        except DownstreamUnavailable:
            raise
        except Exception as exc:  # handled again, and classified, message by message
            log.warning("%s: preparing the batch failed: %r", self.stage.name, exc)

    # --- one record -------------------------------------------------------------------------
    def _decode(self, record: Message) -> In | Exception:
        """The record's message, or why there is none (dead-lettered when its turn comes)."""
        try:
            return self.stage.spec.decode(record.value())  # type: ignore[return-value]
        except (InvalidWireMessage, PoisonInput) as exc:
            return exc

    def _outputs(
        self, record: Message, message: In | Exception
    ) -> list[tuple[str, bytes, bytes, str]]:
        """The records to produce for one input: its outputs, or its dead letter."""
        if isinstance(message, Exception):
            return self._dead_letter(record, message, 1)
        attempts = 0
        while True:
            attempts += 1
            try:
                messages = list(self.stage.handle(message))
                outputs = [self._encode(m) for m in messages]
                self._batch_events += [m for m in messages if metrics.counted(m)]
                metrics.RECORDS.labels(self.stage.name, "ok").inc()
                return outputs
            except DownstreamUnavailable:
                raise
            except PoisonInput as exc:
                return self._dead_letter(record, exc, attempts)
            except Exception as exc:
                if attempts >= self.settings.stage_attempts:
                    return self._dead_letter(record, exc, attempts)
                metrics.RECORDS.labels(self.stage.name, "retried").inc()
                delay = self.settings.retry_backoff_s * 2 ** (attempts - 1)
                log.warning("%s: attempt %d failed (%r), retrying", self.stage.name, attempts, exc)
                time.sleep(min(delay * random.uniform(0.5, 1.5), _MAX_RETRY_SLEEP_S))  # noqa: S311

    def _encode(self, message: WireMessage) -> tuple[str, bytes, bytes, str]:
        topic = topic_name(self.settings, message.topic_key)
        value = message.to_wire()
        if len(value) > self._limits[topic]:
            # Producing it would fail the whole transaction on every replay: refuse the input.
            raise PoisonInput(
                f"output {type(message).__name__} is {len(value)} bytes, over {topic}'s limit"
            )
        return topic, message.kafka_key(), value, type(message).__name__

    def _dead_letter(
        self, record: Message, exc: BaseException, attempts: int
    ) -> list[tuple[str, bytes, bytes, str]]:
        reason = str(exc) or type(exc).__name__
        ids = _identity(record.value())
        log.error(
            "%s: dead-lettering %s:%s@%s: %s",
            self.stage.name,
            record.topic(),
            record.partition(),
            record.offset(),
            reason,
        )
        letter = DeadLetter(
            stage=self.stage.name,
            reason=reason[:4000],
            error_class=type(exc).__name__,
            attempts=attempts,
            source_topic=record.topic() or "",
            source_partition=record.partition() or 0,
            source_offset=record.offset() or 0,
            tenant_id=ids.get("tenant_id"),
            document_id=ids.get("document_id"),
            original_key=_b64(record.key()),
            original_value=_b64(record.value()),
        )
        outputs = [self._encode(letter)]
        self._batch_events.append(letter)
        try:
            failed = DocumentFailed(
                tenant_id=ids.get("tenant_id", ""),
                document_id=ids.get("document_id", ""),
                stage=self.stage.name,
                reason=reason[:4000],
                error_class=type(exc).__name__,
                version=ids.get("version"),
                window=ids.get("window"),
                submitted_at=ids.get("submitted_at"),
            )
            outputs.append(self._encode(failed))
        except ValidationError:
            pass  # no valid document identity in the record: the dead letter alone tells
        metrics.RECORDS.labels(self.stage.name, "dead_lettered").inc()
        return outputs

    # --- Kafka plumbing ---------------------------------------------------------------------
    def _produce(
        self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, str | bytes | None]]
    ) -> None:
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, headers=headers)
                self.producer.poll(0)
                return
            except BufferError:  # local queue full: let librdkafka drain it
                self.producer.poll(0.1)

    def _kafka_call(self, call: Callable[..., Any], *args: Any) -> Any:
        """Retry retriable errors a few times; anything else propagates for classification."""
        for attempt in range(1, _KAFKA_CALL_ATTEMPTS + 1):
            try:
                return call(*args)
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if error.fatal():
                    raise FatalRunnerError(f"{self.stage.name}: {error}") from exc
                if not error.retriable() or attempt == _KAFKA_CALL_ATTEMPTS:
                    raise
                time.sleep(0.2 * attempt)
        raise AssertionError("unreachable")

    def _usable(self, record: Message) -> bool:
        error = record.error()
        if error is None:
            return True
        if error.fatal():
            raise FatalRunnerError(f"{self.stage.name}: consumer error: {error}")
        log.warning("%s: consumer error: %s", self.stage.name, error)
        return False

    def _pause(self, seconds: float, reason: str) -> None:
        assignment = self.consumer.assignment()
        if assignment:
            self.consumer.pause(assignment)
        self._paused_until = time.monotonic() + seconds
        self.health.paused_because = reason
        metrics.PAUSED.labels(self.stage.name).set(1)

    def _resume_if_due(self) -> None:
        if self.health.resume_requested.is_set():  # POST /resume: an operator fixed the cause
            self.health.resume_requested.clear()
            if self._paused_until:
                log.info("%s: resuming on request", self.stage.name)
                self._paused_until = time.monotonic()
        if self._paused_until and time.monotonic() >= self._paused_until:
            self.consumer.resume(self.consumer.assignment())
            self._paused_until = 0.0
            self.health.paused_because = None
            metrics.PAUSED.labels(self.stage.name).set(0)

    def _on_assign(self, consumer: Consumer, partitions: Sequence[TopicPartition]) -> None:
        log.info("%s: assigned %s", self.stage.name, [p.partition for p in partitions])
        # Cooperative rebalancing: assignments arrive as increments.
        self.health.assigned = sorted(
            {*(self.health.assigned or []), *(p.partition for p in partitions)}
        )
        if self._paused_until:
            consumer.pause(list(partitions))

    def _on_revoke(self, consumer: Consumer, partitions: Sequence[TopicPartition]) -> None:
        # Every batch is committed or aborted before the next poll, so nothing is in flight.
        log.info("%s: revoked %s", self.stage.name, [p.partition for p in partitions])
        gone = {p.partition for p in partitions}
        self.health.assigned = [p for p in self.health.assigned or [] if p not in gone]

    def _consumer_config(self) -> dict[str, Any]:
        config = {
            **base_config(self.settings),
            "group.id": self.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "cooperative-sticky",
            # Bounded prefetch keeps memory flat whatever the lag.
            "queued.max.messages.kbytes": self.settings.consumer_queue_kbytes,
            # ... and so does one fetch (default 50 MB). A larger record still comes through: the
            # broker returns the first record batch whatever its size (KIP-74).
            "fetch.max.bytes": self.settings.consumer_queue_kbytes * 1024,
            "queued.min.messages": self.settings.batch_max_messages,
            # One record may take long (a large window's embeddings on a slow CPU); batches are
            # cut at batch_max_seconds, so only a single record could come near this.
            "max.poll.interval.ms": int(max(600.0, self.settings.batch_max_seconds * 10) * 1000),
        }
        if self.settings.instance_id:
            config["group.instance.id"] = self.settings.instance_id  # static membership
        return config

    def _producer_config(self) -> dict[str, Any]:
        return {
            **producer_config(self.settings),
            "transactional.id": self.transactional_id,
            "transaction.timeout.ms": int(self.settings.transaction_timeout_s * 1000),
            "message.max.bytes": max(self._limits.values()) + _ENVELOPE_BYTES,
            "compression.type": "zstd",  # text compresses well; the broker stores it as is
            "linger.ms": 5,
        }


def _identity(value: bytes | None) -> dict[str, Any]:
    """tenant/document/version/window (and a request's submitted_at) of a record, as far as its
    bytes allow (for DLQ/events)."""
    try:
        data = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(data, dict):
        return {}
    ids: dict[str, Any] = {}
    for key, kind in (("tenant_id", str), ("document_id", str), ("version", str), ("window", int)):
        if isinstance(data.get(key), kind):
            ids[key] = data[key]
    submitted_at = data.get("submitted_at")
    if data.get("type") == "DocumentSubmitted" and isinstance(submitted_at, str):
        with contextlib.suppress(ValueError):  # which request failed: the tracker orders by it
            ids["submitted_at"] = datetime.fromisoformat(submitted_at)
    return ids


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")
