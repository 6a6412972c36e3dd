"""Reading topics and waiting, for tests on the real broker."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from streams.kafka_clients import read_all
from streams.messages import Message, PageBatch
from streams.pipeline import STAGE_SPECS, Stage
from streams.runner import Runner
from streams.settings import Settings
from streams.topics import topic_name


def read_topic(settings: Settings, key: str, isolation: str = "read_committed") -> list[bytes]:
    """Everything on a topic right now (all partitions)."""
    return [m.value() or b"" for m in read_all(settings, topic_name(settings, key), isolation, 30)]


def wait_for(condition: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.3)


def chunk_like_stage(
    name: str, handle: Callable[[PageBatch], Iterable[Message]]
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
