"""The runner's loop: take a batch, handle its records, commit outputs and offsets together."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any, Generic

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka import Message as Record

from streams import metrics
from streams.errors import DownstreamUnavailable, FatalRunnerError, PoisonInput, ProviderRefused
from streams.health import Health
from streams.memory import release_free_memory
from streams.messages import InvalidWireMessage
from streams.pipeline import BatchStage, In, Stage
from streams.runner.batch import InputBatch, OutputEncoder, Outputs
from streams.runner.classify import Verdict, classify, retry_delay
from streams.runner.clients import (
    consumer_config,
    max_poll_interval_s,
    transactional_producer_config,
)
from streams.runner.dead_letters import dead_letter
from streams.runner.orphans import OrphanedPartitionGuard
from streams.runner.pauser import PartitionPauser
from streams.runner.transaction import TransactionalProducer
from streams.runner.watchdog import start_watchdog
from streams.settings import Settings
from streams.topics import topic_name

log = logging.getLogger(__name__)

ClientFactory = Callable[[dict[str, Any]], Any]


class Runner(Generic[In]):
    """Runs one stage: a consumer group member with a transactional producer.

    ``consumer_factory`` and ``producer_factory`` (config -> client; confluent-kafka's by
    default) are the seam for tests that must act at a given point of the protocol, e.g. kill
    the process between produce and commit."""

    def __init__(self, stage: Stage[In], settings: Settings,
                 consumer_factory: ClientFactory = Consumer,
                 producer_factory: ClientFactory = Producer) -> None:  # fmt: skip
        self.stage = stage
        self.settings = settings
        self.input_topic = topic_name(settings, stage.spec.input_topic)
        self.group_id = f"{settings.topic_prefix}{stage.name}"
        instance = settings.instance_id or f"{socket.gethostname()}-{os.getpid()}"
        self.transactional_id = f"{self.group_id}-{instance}"
        self.encoder = OutputEncoder(settings, stage.spec.outputs)
        # Live while the loop turns; a batch may take up to the transaction timeout.
        self.health = Health(stall_after_s=settings.transaction_timeout_s * 2)
        self._work_bound_s = max_poll_interval_s(settings)
        self.pauser = PartitionPauser(stage.name, self.health)
        self.orphans = OrphanedPartitionGuard(settings, stage.name, self.group_id,
                                              self.input_topic)  # fmt: skip
        self._stop = threading.Event()
        self._consumer_factory, self._producer_factory = consumer_factory, producer_factory

    # --- lifecycle -------------------------------------------------------------------------
    def stop(self) -> None:
        """Finish the batch in flight, commit it, leave the group. Safe from signal handlers."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())

    def run(self) -> None:
        start_watchdog(self.stage.name, self.health, self._stop)
        with ExitStack() as resources:
            resources.callback(self.stage.close)  # last out: after the consumer has left
            config = consumer_config(self.settings, self.group_id)
            self.consumer: Consumer = self._consumer_factory(config)
            # A dynamic member leaves the group here (a fast rebalance); a static one stays a member
            # until its session times out (KIP-345).
            resources.callback(self.consumer.close)
            config = transactional_producer_config(self.settings, self.transactional_id)
            producer: Producer = self._producer_factory(config)
            resources.callback(producer.flush, 10)
            self.transaction = TransactionalProducer(
                producer, self.stage.name, self.settings.transaction_timeout_s, self.health
            )
            self.transaction.init(self.transactional_id)
            self.health.producer_ready = True
            self._subscribe()
            log.info("%s: consuming %s as %s", self.stage.name, self.input_topic, self.group_id)
            while not self._stop.is_set():
                self.health.beat()
                if self.orphans.should_rejoin():
                    self._subscribe()
                self.pauser.resume_if_due(self.consumer)
                batch = InputBatch(self._next_records())
                if batch.records:
                    self.process(batch)
                    # Before waiting for the next records: the batch's records go, and the C
                    # heap's pages it freed go back to the system (glibc keeps them otherwise,
                    # and each batch would start from the last one's peak).
                    del batch
                    release_free_memory()

    # --- one batch = one transaction --------------------------------------------------------
    def process(self, batch: InputBatch) -> None:
        """Handle the batch's records, then commit their outputs and offsets in one transaction;
        on a downstream outage or an aborted transaction the batch is consumed again."""
        started = time.monotonic()
        outputs = Outputs(self.encoder)
        try:
            batch = self._handle_all(batch, outputs, started)
        except DownstreamUnavailable as exc:
            self._rewind(batch, f"downstream unavailable: {exc}")
            self.pauser.pause(self.consumer, exc.retry_after_s, str(exc))
            if isinstance(exc, ProviderRefused):  # wherever raised (the parser child too)
                metrics.PROVIDER_REFUSED.labels(self.stage.name).set(1)
            return
        metrics.PROVIDER_REFUSED.labels(self.stage.name).set(0)
        per_topic = outputs.per_topic()
        if self.transaction.commit(outputs.records, batch.next_offsets(), self.consumer):
            for (topic, kind), count in per_topic.items():
                metrics.MESSAGES_OUT.labels(self.stage.name, topic, kind).inc(count)
            metrics.count_committed(self.stage.name, outputs.counted)
            metrics.RECORDS_IN.labels(self.stage.name).inc(len(batch.records))
        else:
            self._rewind(batch, "transaction aborted")
        metrics.BATCH_SECONDS.labels(self.stage.name).observe(time.monotonic() - started)

    def _handle_all(self, batch: InputBatch, outputs: Outputs, started: float) -> InputBatch:
        """Every record's outputs (or dead letter) into ``outputs``; the batch actually handled
        (cut short at BATCH_MAX_SECONDS: the rest is sought back to for the next one)."""
        # A record stage decodes one record at a time (one decoded window alive at once); a
        # batch stage sees them all first.
        if isinstance(self.stage, BatchStage):
            with self.health.working(self._work_bound_s):
                decoded: list[In | Exception | None] | None = self._prepare(batch)
        else:
            decoded = None
        for done, record in enumerate(batch.records):
            if done and time.monotonic() - started > self.settings.batch_max_seconds:
                return batch.split(done, self.consumer)  # enough for one transaction
            message = decoded[done] if decoded is not None else self._decode(record)
            if decoded is not None:
                decoded[done] = None  # handled next: let it go after
            assert message is not None
            with self.health.working(self._work_bound_s):  # beats when the record is done
                self._handle(record, message, outputs)
            del message
        return batch

    def _prepare(self, batch: InputBatch) -> list[In | Exception | None]:
        assert isinstance(self.stage, BatchStage)
        decoded: list[In | Exception | None] = [self._decode(r) for r in batch.records]
        try:
            self.stage.prepare([m for m in decoded if not isinstance(m, Exception | None)])
        except DownstreamUnavailable:
            raise
        except Exception as exc:  # handled again, and classified, message by message
            log.warning("%s: preparing the batch failed: %r", self.stage.name, exc)
        return decoded

    # --- one record -------------------------------------------------------------------------
    def _decode(self, record: Record) -> In | Exception:
        """The record's message, or why there is none (dead-lettered when its turn comes)."""
        try:
            return self.stage.spec.decode(record.value())  # type: ignore[return-value]
        except (InvalidWireMessage, PoisonInput) as exc:
            return exc

    def _handle(self, record: Record, message: In | Exception, outputs: Outputs) -> None:
        """One input's outputs, retried as the classifier says; else its dead letter."""
        attempt = 0
        while True:
            attempt += 1
            try:
                if isinstance(message, Exception):
                    raise message
                outputs.add(list(self.stage.handle(message)))
                metrics.RECORDS.labels(self.stage.name, "ok").inc()
                return
            except Exception as exc:
                verdict = classify(exc, attempt, self.settings.stage_attempts)
                if verdict == Verdict.PAUSE_DOWNSTREAM:
                    raise
                if verdict == Verdict.DEAD_LETTER:
                    log.error("%s: dead-lettering %s:%s@%s: %s", self.stage.name, record.topic(),
                              record.partition(), record.offset(), exc)  # fmt: skip
                    outputs.add(dead_letter(self.stage.name, record, exc, attempt))
                    metrics.RECORDS.labels(self.stage.name, "dead_lettered").inc()
                    return
                metrics.RECORDS.labels(self.stage.name, "retried").inc()
                log.warning("%s: attempt %d failed (%r), retrying", self.stage.name, attempt, exc)
                time.sleep(retry_delay(attempt, self.settings.retry_backoff_s))

    # --- the consumer -----------------------------------------------------------------------
    def _subscribe(self) -> None:
        self.consumer.subscribe(
            self.orphans.subscription(), on_assign=self._on_assign, on_revoke=self._on_revoke
        )

    def _next_records(self) -> list[Record]:
        """Wait (up to a second) for one record; then take what else arrives within
        BATCH_MAX_WAIT_S: a lone document is not held back. A batch stage with a longer gather
        wait (embed: fuller requests) waits for more only when that short wait brought some:
        the topic is busy, so more is on its way."""
        first = self.consumer.poll(1.0)
        if first is None:
            return []
        limit = self.settings.batch_max_messages - 1
        records = [first, *self.consumer.consume(limit, self.settings.batch_max_wait_s)]
        gather = self.stage.gather_wait_s if isinstance(self.stage, BatchStage) else None
        if gather is not None and 1 < len(records) <= limit:
            records += self.consumer.consume(limit + 1 - len(records), gather)
        return [r for r in records if self._usable(r)]

    def _usable(self, record: Record) -> bool:
        error = record.error()
        if error is None:
            return True
        if error.fatal():
            raise FatalRunnerError(f"{self.stage.name}: consumer error: {error}")
        log.warning("%s: consumer error: %s", self.stage.name, error)
        return False

    def _rewind(self, batch: InputBatch, why: str) -> None:
        log.warning("%s: redoing a batch of %d later: %s", self.stage.name, len(batch.records), why)
        batch.rewind(self.consumer)

    def _on_assign(self, consumer: Consumer, partitions: Sequence[TopicPartition]) -> None:
        log.info("%s: assigned %s", self.stage.name, [p.partition for p in partitions])
        # Cooperative rebalancing: assignments arrive as increments.
        self.health.assigned = sorted(
            {*(self.health.assigned or []), *(p.partition for p in partitions)}
        )
        self.pauser.on_assign(consumer, partitions)

    def _on_revoke(self, consumer: Consumer, partitions: Sequence[TopicPartition]) -> None:
        # Every batch is committed or aborted before the next poll, so nothing is in flight.
        log.info("%s: revoked %s", self.stage.name, [p.partition for p in partitions])
        gone = {p.partition for p in partitions}
        self.health.assigned = [p for p in self.health.assigned or [] if p not in gone]
