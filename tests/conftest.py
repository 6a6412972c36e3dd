"""Test fixtures: the real local stack (Kafka broker + Weaviate server) on free loopback ports.

The session's stack lives in a temp state dir and is stopped at the end. Set
DOCSTREAMS_TEST_REUSE_STACK=1 to run against an already running `docstreams stack up` instead
(faster while iterating); its data is then left in place.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from types import FrameType

import pytest

from docstreams_dev.stack import Stack
from docstreams_dev.stack.ports import private_stack_settings
from streams.settings import Settings
from tests.kafka_helpers import with_topics


def _interrupt_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # A CI timeout or `kill` sends SIGTERM. Treated as Ctrl-C, pytest ends the session and
    # runs the fixtures' teardown, which stops the stack and the stage processes.
    raise KeyboardInterrupt


signal.signal(signal.SIGTERM, _interrupt_on_sigterm)


@pytest.fixture(scope="session")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    if os.environ.get("DOCSTREAMS_TEST_REUSE_STACK") == "1":
        yield Settings(topic_prefix=f"test-{uuid.uuid4().hex[:8]}.")
        return
    settings = private_stack_settings(tmp_path_factory.mktemp("stack"))
    stack = Stack(settings)
    try:
        stack.up()
        yield settings
    finally:
        stack.down()


@pytest.fixture
def settings(stack_settings: Settings) -> Settings:
    """The session stack's settings with a topic prefix of this test's own."""
    return stack_settings.model_copy(update={"topic_prefix": f"t{uuid.uuid4().hex[:10]}."})


@pytest.fixture
def topics(settings: Settings) -> Settings:
    """The settings of the ``settings`` fixture, once every topic under its prefix exists."""
    return with_topics(settings)
