"""The runner's error rules, as pure decisions (no Kafka needed)."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError

from streams.errors import (
    DownstreamUnavailable,
    PoisonInput,
    ProviderRefused,
    ResourceLimitExceeded,
    TransientError,
)
from streams.messages import InvalidWireMessage
from streams.runner.classify import KafkaVerdict, Verdict, classify, classify_kafka, retry_delay


@pytest.mark.parametrize(
    "error",
    [DownstreamUnavailable("weaviate down"), ProviderRefused("quota", "insufficient_quota", 60)],
)
def test_an_unavailable_downstream_pauses_however_often_it_happened(error: Exception) -> None:
    assert classify(error, attempt=1, attempts=3) == Verdict.PAUSE_DOWNSTREAM
    assert classify(error, attempt=3, attempts=3) == Verdict.PAUSE_DOWNSTREAM


@pytest.mark.parametrize(
    "error",
    [PoisonInput("corrupt"), ResourceLimitExceeded("pages", "9000 > 5000"),
     InvalidWireMessage("not json")],
)  # fmt: skip
def test_poison_input_is_dead_lettered_at_its_first_try(error: Exception) -> None:
    assert classify(error, attempt=1, attempts=3) == Verdict.DEAD_LETTER


@pytest.mark.parametrize("error", [TransientError("502"), ValueError("bug"), OSError("reset")])
def test_other_errors_are_retried_until_the_last_try_then_dead_lettered(error: Exception) -> None:
    assert classify(error, attempt=1, attempts=3) == Verdict.RETRY
    assert classify(error, attempt=2, attempts=3) == Verdict.RETRY
    assert classify(error, attempt=3, attempts=3) == Verdict.DEAD_LETTER


def _kafka_error(**flags: bool) -> KafkaError:
    return KafkaError(KafkaError._STATE, "test", **flags)


def test_a_fatal_kafka_error_ends_the_process_even_if_also_retriable() -> None:
    error = _kafka_error(fatal=True, retriable=True)
    assert classify_kafka(error, attempt=1, attempts=5) == KafkaVerdict.FATAL


def test_a_retriable_kafka_error_is_called_again_then_aborted_if_abortable() -> None:
    error = _kafka_error(retriable=True, txn_requires_abort=True)
    assert classify_kafka(error, attempt=4, attempts=5) == KafkaVerdict.CALL_AGAIN
    assert classify_kafka(error, attempt=5, attempts=5) == KafkaVerdict.ABORT


def test_an_abortable_kafka_error_aborts_the_transaction() -> None:
    assert classify_kafka(_kafka_error(txn_requires_abort=True), 1, 5) == KafkaVerdict.ABORT


def test_a_kafka_error_neither_retriable_nor_abortable_ends_the_process() -> None:
    assert classify_kafka(_kafka_error(), attempt=1, attempts=5) == KafkaVerdict.FATAL
    assert classify_kafka(_kafka_error(retriable=True), 5, 5) == KafkaVerdict.FATAL


def test_retry_delays_grow_exponentially_with_jitter_and_are_capped() -> None:
    for attempt in (1, 2, 3):
        delay = retry_delay(attempt, backoff_s=1.0)
        assert 0.5 * 2 ** (attempt - 1) <= delay <= 1.5 * 2 ** (attempt - 1)
    assert retry_delay(20, backoff_s=1.0, most_s=30.0) == 30.0
