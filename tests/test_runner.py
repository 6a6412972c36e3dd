"""The runner on the real broker: exactly-once batches, dead letters, back-pressure, SIGKILL."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer
from prometheus_client import REGISTRY
from typer.testing import CliRunner

from streams.cli import app
from streams.errors import DownstreamUnavailable, PoisonInput
from streams.health import Health
from streams.kafka_clients import admin_client, base_config
from streams.messages import ChunkBatch, DeadLetter, DocumentFailed, Message, Page, PageBatch
from streams.runner import Runner
from streams.settings import Settings, as_environment
from streams.topics import create_topics, topic_name
from tests.kafka_helpers import chunk_like_stage, read_topic, running, wait_for
from tests.runner_app import STAGE, one_chunk_per_page

pytestmark = pytest.mark.stack
ROOT = Path(__file__).resolve().parents[1]
VERSION = "0f" * 32


@pytest.fixture
def topics(settings: Settings) -> Settings:
    create_topics(admin_client(settings), settings)
    return settings.model_copy(update={"retry_backoff_s": 0.05, "batch_max_messages": 8})


def _page_batch(doc: str, window: int = 0) -> PageBatch:
    return PageBatch(tenant_id="t1", document_id=doc, version=VERSION, window=window,
                     window_count=1, pages=[Page(number=1, text=f"text of {doc}")],
                     content_type="application/pdf")  # fmt: skip


def _publish(settings: Settings, records: Iterable[bytes | Message]) -> None:
    producer = Producer({**base_config(settings), "message.max.bytes": 8 * 2**20})
    for record in records:
        value = record.to_wire() if isinstance(record, Message) else record
        producer.produce(topic_name(settings, "pages"), value=value, key=b"k")
    assert producer.flush(30) == 0


def _chunk_docs(settings: Settings, isolation: str = "read_committed") -> list[str]:
    return [ChunkBatch.from_wire(v).document_id for v in read_topic(settings, "chunks", isolation)]


def test_every_input_yields_its_outputs_exactly_once(topics: Settings) -> None:
    docs = [f"doc-{i}" for i in range(40)]
    _publish(topics, [_page_batch(d) for d in docs])
    with running(STAGE, topics):
        wait_for(lambda: len(_chunk_docs(topics)) >= len(docs))
    assert sorted(_chunk_docs(topics)) == sorted(docs)
    # The checkpoint moved with the outputs: a restarted runner finds nothing left to do. One
    # more input on the same partition: once its output is committed, the runner has read past
    # everything before it, and would have redone any of it by then.
    _publish(topics, [_page_batch("after-the-restart")])
    with running(STAGE, topics):
        wait_for(lambda: "after-the-restart" in _chunk_docs(topics))
    assert sorted(_chunk_docs(topics)) == sorted([*docs, "after-the-restart"])


def test_records_larger_than_the_fetch_bound_still_flow(topics: Settings) -> None:
    # 3 MB records against a 1 MB prefetch and fetch bound: each still comes through, alone.
    bounded = topics.model_copy(update={"consumer_queue_kbytes": 1024})
    big = [
        PageBatch(tenant_id="t1", document_id=f"big-{i}", version=VERSION, window=0,
                  window_count=1, pages=[Page(number=1, text=os.urandom(1_500_000).hex())],
                  content_type="application/pdf")
        for i in range(3)
    ]  # fmt: skip
    _publish(bounded, [*big, _page_batch("small")])
    with running(STAGE, bounded):
        wait_for(lambda: len(_chunk_docs(bounded)) >= 4)
    assert sorted(_chunk_docs(bounded)) == ["big-0", "big-1", "big-2", "small"]


def test_poison_input_is_dead_lettered_and_the_partition_keeps_flowing(topics: Settings) -> None:
    def refuse_doc_b(batch: PageBatch) -> list[ChunkBatch]:
        if batch.document_id == "doc-b":
            raise PoisonInput("doc-b is encrypted")
        return one_chunk_per_page(batch)

    _publish(topics, [_page_batch("doc-a"), b"{not json", b'{"type": "PageBatch"}',
                      _page_batch("doc-b"), _page_batch("doc-c")])  # fmt: skip
    with running(chunk_like_stage("test-chunk", refuse_doc_b), topics):
        wait_for(lambda: len(read_topic(topics, "dlq")) >= 3 and len(_chunk_docs(topics)) >= 2)

    assert sorted(_chunk_docs(topics)) == ["doc-a", "doc-c"]
    letters = sorted(
        (DeadLetter.from_wire(v) for v in read_topic(topics, "dlq")), key=lambda d: d.source_offset
    )
    assert [(d.stage, d.error_class) for d in letters] == [
        ("test-chunk", "InvalidWireMessage"),
        ("test-chunk", "InvalidWireMessage"),
        ("test-chunk", "PoisonInput"),
    ]
    assert "not JSON" in letters[0].reason
    assert "pages" in letters[1].reason  # names the missing field
    assert letters[2].reason == "doc-b is encrypted" and letters[2].document_id == "doc-b"
    assert letters[2].original_value is not None and letters[2].source_topic.endswith("pages")
    dead = REGISTRY.get_sample_value(
        "docstreams_dead_letters_total", {"stage": "test-chunk", "error": "InvalidWireMessage"}
    )
    assert dead is not None and dead >= 2
    failed = [DocumentFailed.from_wire(v) for v in read_topic(topics, "events")]
    assert [(f.document_id, f.stage, f.reason) for f in failed] == [
        ("doc-b", "test-chunk", "doc-b is encrypted")
    ]


def test_a_failing_input_is_retried_then_dead_lettered_with_its_attempts(
    topics: Settings,
) -> None:
    calls: dict[str, int] = {}

    def flaky(batch: PageBatch) -> list[ChunkBatch]:
        calls[batch.document_id] = calls.get(batch.document_id, 0) + 1
        if batch.document_id == "always-bad" or calls[batch.document_id] == 1:
            raise ConnectionError(f"boom {calls[batch.document_id]}")
        return one_chunk_per_page(batch)

    _publish(topics, [_page_batch("flaky-once"), _page_batch("always-bad")])
    with running(chunk_like_stage("test-chunk", flaky), topics):
        wait_for(lambda: len(read_topic(topics, "dlq")) >= 1 and len(_chunk_docs(topics)) >= 1)

    assert _chunk_docs(topics) == ["flaky-once"]
    (letter,) = [DeadLetter.from_wire(v) for v in read_topic(topics, "dlq")]
    assert (letter.document_id, letter.attempts) == ("always-bad", topics.stage_attempts)
    assert letter.error_class == "ConnectionError" and letter.reason == "boom 3"


def test_downstream_unavailable_pauses_and_retries_without_dead_lettering(
    topics: Settings,
) -> None:
    calls = {"n": 0}

    def weaviate_down_twice(batch: PageBatch) -> list[ChunkBatch]:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise DownstreamUnavailable("weaviate: connection refused", retry_after_s=0.5)
        return one_chunk_per_page(batch)

    _publish(topics, [_page_batch("d1"), _page_batch("d2")])
    with running(chunk_like_stage("test-chunk", weaviate_down_twice), topics):
        wait_for(lambda: len(_chunk_docs(topics)) >= 2)
    assert sorted(_chunk_docs(topics)) == ["d1", "d2"]
    assert read_topic(topics, "dlq") == []
    assert calls["n"] >= 4  # two refused attempts, then each input once


def test_a_stopped_runner_closes_its_stage_once_after_its_consumer(topics: Settings) -> None:
    consumer_closed_at_close: list[bool] = []

    def close() -> None:
        try:
            runner.consumer.assignment()  # RuntimeError once the consumer is closed
            consumer_closed_at_close.append(False)
        except RuntimeError:
            consumer_closed_at_close.append(True)

    stage = dataclasses.replace(chunk_like_stage("test-close", one_chunk_per_page), close=close)
    _publish(topics, [_page_batch("d1")])
    with running(stage, topics) as runner:
        wait_for(lambda: _chunk_docs(topics) == ["d1"])
        assert consumer_closed_at_close == []  # not while it runs
    assert consumer_closed_at_close == [True]


def test_sigkill_in_the_middle_of_a_transaction_leaves_no_duplicates(
    topics: Settings, tmp_path: Path
) -> None:
    settings = topics.model_copy(
        update={"instance_id": "test-chunk-0", "batch_max_messages": 20, "batch_max_wait_s": 2.0}
    )
    docs = [f"doc-{i:02d}" for i in range(20)]
    _publish(settings, [_page_batch(d) for d in docs])
    blocked = tmp_path / "blocked"
    env = {**os.environ, **as_environment(settings), "RUNNER_APP_BLOCK_ON": "doc-15",
           "RUNNER_APP_BLOCKED_FILE": str(blocked)}  # fmt: skip
    app = [sys.executable, "-m", "tests.runner_app"]
    child = subprocess.Popen(app, env=env, cwd=ROOT)
    try:
        wait_for(blocked.exists, timeout_s=90)
        time.sleep(1)  # outputs of the records before doc-15 reach the broker, uncommitted
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        child.kill()
    uncommitted = _chunk_docs(settings, "read_uncommitted")
    assert len(uncommitted) >= 1, "the kill did not happen inside an open transaction"
    assert _chunk_docs(settings) == []

    env.pop("RUNNER_APP_BLOCK_ON")
    child = subprocess.Popen(app, env=env, cwd=ROOT)
    try:
        wait_for(lambda: len(_chunk_docs(settings)) >= len(docs), timeout_s=120)
        child.send_signal(signal.SIGTERM)  # graceful: finishes its batch, leaves the group
        assert child.wait(60) == 0
    finally:
        child.kill()
    assert sorted(_chunk_docs(settings)) == docs  # each exactly once
    assert len(_chunk_docs(settings, "read_uncommitted")) > len(docs)  # the aborted copies


def test_dead_letters_are_listed_and_replayed_to_their_topic_after_a_fix(
    topics: Settings,
) -> None:
    fixed = {"yes": False}

    def refuse_until_fixed(batch: PageBatch) -> list[ChunkBatch]:
        if not fixed["yes"]:
            raise PoisonInput("unsupported encoding")
        return one_chunk_per_page(batch)

    env = as_environment(topics)
    _publish(topics, [_page_batch("doc-x")])
    with running(chunk_like_stage("test-chunk", refuse_until_fixed), topics):
        wait_for(lambda: len(read_topic(topics, "dlq")) == 1)
        listed = CliRunner().invoke(app, ["dlq", "list", "--json"], env=env)
        (entry,) = orjson.loads(listed.stdout)
        assert (entry["stage"], entry["document_id"]) == ("test-chunk", "doc-x")
        assert entry["reason"] == "unsupported encoding"

        fixed["yes"] = True  # the cause is fixed: replay the dead letter
        replayed = CliRunner().invoke(app, ["dlq", "replay", entry["id"]], env=env)
        assert replayed.exit_code == 0 and "replayed 1 record" in replayed.stdout
        wait_for(lambda: _chunk_docs(topics) == ["doc-x"])
    unknown = CliRunner().invoke(app, ["dlq", "replay", "9:999"], env=env)
    assert unknown.exit_code == 1 and "no dead letter with id 9:999" in unknown.stderr


def test_a_slow_batch_is_committed_in_parts_within_its_time_budget(topics: Settings) -> None:
    def slow(batch: PageBatch) -> list[ChunkBatch]:
        time.sleep(0.3)  # e.g. a large window's embeddings
        return one_chunk_per_page(batch)

    docs = [f"slow-{i}" for i in range(12)]
    _publish(topics, [_page_batch(d) for d in docs])
    budget = topics.model_copy(update={"batch_max_seconds": 0.5})
    with running(chunk_like_stage("test-slow", slow), budget):
        wait_for(lambda: len(_chunk_docs(topics)) >= len(docs))
    assert sorted(_chunk_docs(topics)) == sorted(docs)
    committed = REGISTRY.get_sample_value(
        "docstreams_transactions_total", {"stage": "test-slow", "outcome": "committed"}
    )
    assert committed is not None and committed >= 5  # 8 records would fit one batch otherwise


def test_a_kafka_call_overdue_past_its_bound_makes_the_stage_not_live() -> None:
    # send_offsets_to_transaction can block for good after a broker restart (librdkafka #5456,
    # #5511): the bound makes /healthz and the watchdog replace the process long before the
    # loop's own stall limit would.
    health = Health(stall_after_s=120.0)
    with health.bounded(0.2):
        assert health.live()
        wait_for(lambda: not health.live(), timeout_s=5)
        assert not health.report()["live"]
    assert health.live()  # the call returned: live again


def test_a_stage_working_longer_than_the_stall_bound_stays_live_and_commits(
    topics: Settings,
) -> None:
    # A long window on a loaded machine is progress: the watchdog and /healthz must not replace
    # the process in the middle of it (they did, at the 120 s stall bound, in the size chaos
    # run). Here the bound is 1 s and one record takes 3 s.
    working, done = threading.Event(), threading.Event()

    def slow(batch: PageBatch) -> list[ChunkBatch]:
        working.set()
        time.sleep(3.0)
        done.set()
        return one_chunk_per_page(batch)

    _publish(topics, [_page_batch("long")])
    runner = Runner(chunk_like_stage("test-long", slow), topics)
    runner.health.stall_after_s = 1.0
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        assert working.wait(60)
        live = []
        while not done.is_set():
            live.append(runner.health.live())
            time.sleep(0.05)
        assert len(live) > 20 and all(live), live
        wait_for(lambda: _chunk_docs(topics) == ["long"])
    finally:
        runner.stop()
        thread.join(60)
    assert not thread.is_alive()
