"""Reading topics, creating them and waiting, for tests on the real broker."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from confluent_kafka import IsolationLevel, Message, TopicPartition
from confluent_kafka.admin import OffsetSpec

from streams.kafka_clients import admin_client, read_all
from streams.messages import Message as WireMessage
from streams.messages import PageBatch
from streams.pipeline import STAGE_SPECS, Stage
from streams.runner import BATCH_HEADER, Runner
from streams.settings import Settings
from streams.topics import create_topics, topic_name


def with_topics(settings: Settings) -> Settings:
    """``settings``, once every docstreams topic under its prefix exists."""
    create_topics(admin_client(settings), settings)
    return settings


def read_records(settings: Settings, key: str, isolation: str = "read_committed") -> list[Message]:
    """Every record on a topic right now (all partitions), with its headers."""
    return read_all(settings, topic_name(settings, key), isolation, 30)


def read_topic(settings: Settings, key: str, isolation: str = "read_committed") -> list[bytes]:
    """Every record's value on a topic right now (all partitions)."""
    return [m.value() or b"" for m in read_records(settings, key, isolation)]


def batch_of(record: Message) -> str | None:
    """The runner batch that wrote ``record`` (transactional id / process start / sequence)."""
    batch = dict(record.headers() or []).get(BATCH_HEADER)
    return batch.decode() if isinstance(batch, bytes) else None


def transaction_in_flight(settings: Settings, key: str) -> Callable[[], bool]:
    """A probe: whether a transaction's records on the topic are neither committed nor aborted
    yet (the last stable offset is behind the end on some partition)."""
    admin = admin_client(settings)
    topic = topic_name(settings, key)
    partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions

    def ends(isolation: IsolationLevel) -> dict[int, int]:
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]  # untyped in the client
        asked = {TopicPartition(topic, p): latest for p in partitions}
        answers = admin.list_offsets(asked, isolation_level=isolation, request_timeout=10)
        return {tp.partition: future.result().offset for tp, future in answers.items()}

    def probe() -> bool:
        stable = ends(IsolationLevel.READ_COMMITTED)  # first: a commit meanwhile only lifts it
        written = ends(IsolationLevel.READ_UNCOMMITTED)
        return any(written[p] > stable[p] for p in partitions)

    return probe


def wait_for(
    condition: Callable[[], bool], timeout_s: float = 60, explain: Callable[[], str] | None = None
) -> None:
    """Poll ``condition`` until true; on timeout fail with ``explain()``'s account of why."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out: {explain() if explain else condition}")
        time.sleep(0.3)


def chunk_like_stage(
    name: str, handle: Callable[[PageBatch], Iterable[WireMessage]]
) -> Stage[PageBatch]:
    """A test stage in the chunk stage's place (pages in, chunks and events out), under its own
    name and so its own consumer group."""
    return Stage(dataclasses.replace(STAGE_SPECS["chunk"], name=name), handle)


@contextmanager
def running(stage: Stage[PageBatch], settings: Settings) -> Iterator[Runner[PageBatch]]:
    runner = Runner(stage, settings)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        yield runner
    finally:
        runner.stop()
        thread.join(60)
        assert not thread.is_alive(), "runner did not stop"
