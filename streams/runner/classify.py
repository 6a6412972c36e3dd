"""What to do about an error: one pure decision, no Kafka needed to test it.

PoisonInput (and undecodable bytes)      -> dead-letter now
DownstreamUnavailable (ProviderRefused)  -> pause the partitions, redo the batch later
any other exception                      -> retry with backoff, dead-letter once out of tries
Kafka: retriable                         -> call again (a few times)
Kafka: transaction needs abort           -> abort, rewind, redo the batch
Kafka: fatal (fenced, ...), or anything else -> the process exits (and is restarted)
"""

from __future__ import annotations

import random
from enum import StrEnum

from confluent_kafka import KafkaError

from streams.errors import DownstreamUnavailable, PoisonInput
from streams.messages import InvalidWireMessage


class Verdict(StrEnum):
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"
    PAUSE_DOWNSTREAM = "pause_downstream"


def classify(error: BaseException, attempt: int, attempts: int) -> Verdict:
    """The verdict on a stage's error at its ``attempt``-th try of ``attempts``."""
    if isinstance(error, DownstreamUnavailable):
        return Verdict.PAUSE_DOWNSTREAM  # not the input's fault: never dead-lettered for it
    if isinstance(error, PoisonInput | InvalidWireMessage):
        return Verdict.DEAD_LETTER  # it would fail the same way every time
    return Verdict.RETRY if attempt < attempts else Verdict.DEAD_LETTER


class KafkaVerdict(StrEnum):
    CALL_AGAIN = "call_again"
    ABORT = "abort"
    FATAL = "fatal"


def classify_kafka(error: KafkaError, attempt: int, attempts: int) -> KafkaVerdict:
    """The verdict on a transactional call's error at its ``attempt``-th try of ``attempts``."""
    if error.fatal():
        return KafkaVerdict.FATAL  # e.g. fenced by a newer instance of this app
    if error.retriable() and attempt < attempts:
        return KafkaVerdict.CALL_AGAIN
    if error.txn_requires_abort():
        return KafkaVerdict.ABORT  # the batch is redone; its outputs never become visible
    return KafkaVerdict.FATAL  # the transaction's state is unknown: a fresh process fences it


def retry_delay(attempt: int, backoff_s: float, most_s: float = 30.0) -> float:
    """Seconds before the next try: exponential from ``backoff_s``, jittered so replicas that
    failed together do not retry together."""
    return min(backoff_s * 2.0 ** (attempt - 1) * random.uniform(0.5, 1.5), most_s)  # noqa: S311
