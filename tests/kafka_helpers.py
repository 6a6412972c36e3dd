"""Reading topics and waiting, for tests on the real broker."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from confluent_kafka import Consumer, TopicPartition

from streams.kafka_clients import admin_client, base_config
from streams.messages import PageBatch
from streams.runner import Runner, Stage
from streams.settings import Settings
from streams.topics import topic_name


def read_topic(settings: Settings, key: str, isolation: str = "read_committed") -> list[bytes]:
    """Everything on a topic right now (all partitions)."""
    topic = topic_name(settings, key)
    consumer = Consumer({**base_config(settings), "group.id": f"r-{uuid.uuid4().hex[:8]}",
                         "isolation.level": isolation, "enable.auto.commit": False,
                         "enable.partition.eof": True})  # fmt: skip
    partitions = admin_client(settings).list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    values: list[bytes] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + 30
    while len(at_end) < len(partitions) and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error() is not None:
            at_end.add(msg.partition() or 0)
        elif (value := msg.value()) is not None:
            values.append(value)
    consumer.close()
    return values


def wait_for(condition: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.3)


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
