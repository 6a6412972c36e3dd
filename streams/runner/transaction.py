"""The transactional producer: a batch's outputs and its input offsets, committed together.

Reads like confluent-kafka's exactly-once example: begin, produce, send the consumer's offsets,
commit; on an abortable error abort (the caller rewinds and redoes the batch). Only ever called
once a batch's outputs are all made: the transaction lasts as long as producing and committing,
never as long as a handler's work or a retry's sleep, so it cannot run into
transaction.timeout.ms and downstream read_committed consumers wait for it only briefly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from streams import metrics
from streams.errors import FatalRunnerError
from streams.health import Health
from streams.runner.batch import Output
from streams.runner.classify import KafkaVerdict, classify_kafka

# Every record a batch produces carries its batch's id (transactional id / process start /
# sequence): which outputs were written together, and which batches were redone after an abort.
BATCH_HEADER = "docstreams-batch"
_CALL_ATTEMPTS = 5
# send_offsets_to_transaction can block for good after a broker restart (librdkafka #5456: its
# timeout is never checked; #5511: a stale group coordinator is never looked up again), while
# it normally takes milliseconds. Past this bound the process is not live: the watchdog (or the
# liveness probe) replaces it, and the new process's init fences the open transaction.
SEND_OFFSETS_BOUND_S = 30.0


class TransactionalProducer:
    def __init__(
        self, producer: Producer, stage: str, timeout_s: float, health: Health | None = None
    ) -> None:
        self.producer = producer
        self.stage = stage
        self.timeout_s = timeout_s
        self.health = health or Health(stall_after_s=float("inf"))
        self.transactional_id = ""
        self._started = int(time.time())
        self._batches = 0

    def init(self, transactional_id: str) -> None:
        """Fence any earlier process with this transactional id (its open transaction aborts)."""
        self.transactional_id = transactional_id
        self._call(self.producer.init_transactions, self.timeout_s)

    def commit(self, outputs: list[Output], offsets: list[TopicPartition],
               consumer: Consumer) -> bool:  # fmt: skip
        """Produce ``outputs`` (emptying the list) and commit them with the input ``offsets``;
        False if the transaction was aborted (nothing of it is visible; redo the batch)."""
        self._batches += 1
        batch_id = f"{self.transactional_id}/{self._started}/{self._batches}".encode()
        headers: list[tuple[str, str | bytes | None]] = [(BATCH_HEADER, batch_id)]
        self._call(self.producer.begin_transaction)
        try:
            outputs.reverse()
            while outputs:  # each value goes once librdkafka holds its own copy
                self._produce(outputs.pop(), headers)
            metadata = consumer.consumer_group_metadata()
            with self.health.bounded(SEND_OFFSETS_BOUND_S):
                self._call(self.producer.send_offsets_to_transaction, offsets, metadata,
                           self.timeout_s)  # fmt: skip
            self._call(self.producer.commit_transaction, self.timeout_s)
        except _Abort as abort:
            self.abort(str(abort))
            return False
        except BaseException:
            self.abort("unexpected error")
            raise
        metrics.TRANSACTIONS.labels(self.stage, "committed").inc()
        return True

    def abort(self, why: str) -> None:
        try:
            self._call(self.producer.abort_transaction, self.timeout_s)
        except (_Abort, KafkaException) as exc:
            raise FatalRunnerError(f"{self.stage}: abort ({why}) failed: {exc}") from exc
        metrics.TRANSACTIONS.labels(self.stage, "aborted").inc()

    def _produce(self, output: Output, headers: list[tuple[str, str | bytes | None]]) -> None:
        while True:
            try:
                self.producer.produce(output.topic, value=output.value, key=output.key,
                                      headers=headers)  # fmt: skip
                self.producer.poll(0)
                return
            except BufferError:  # local queue full: let librdkafka drain it
                self.producer.poll(0.1)

    def _call(self, call: Callable[..., Any], *args: Any) -> Any:
        for attempt in range(1, _CALL_ATTEMPTS + 1):
            try:
                return call(*args)
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                verdict = classify_kafka(error, attempt, _CALL_ATTEMPTS)
                if verdict == KafkaVerdict.ABORT:
                    raise _Abort(str(error)) from exc
                if verdict == KafkaVerdict.FATAL:
                    raise FatalRunnerError(f"{self.stage}: {error}") from exc
                time.sleep(0.2 * attempt)
        raise AssertionError("unreachable")


class _Abort(Exception):
    """The transaction must be aborted; the batch is redone."""
