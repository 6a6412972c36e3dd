"""The parser sandbox: a child process under memory and time limits that may die alone."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from streams.adapters.sandbox import Limits, Sandbox
from streams.errors import PoisonInput, ResourceLimitExceeded


def allocate(megabytes: int) -> int:
    return len(bytearray(megabytes * 2**20))


def sleep_for(seconds: float) -> None:
    import time

    time.sleep(seconds)


def crash() -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def refuse() -> None:
    raise PoisonInput("not a readable PDF")


def child_pid() -> int:
    return os.getpid()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox(Limits(memory_mb=512, seconds=3.0, decoded_stream_mb=16))
    yield box
    box.close()


def test_a_call_returns_its_result_from_a_child_process_that_is_kept(sandbox: Sandbox) -> None:
    first = sandbox.call("a pid", child_pid)
    assert first != os.getpid()
    assert sandbox.call("a pid", child_pid) == first
    assert sandbox.call("a small allocation", allocate, 16) == 16 * 2**20


def test_an_allocation_over_the_memory_limit_is_a_resource_limit_and_the_next_call_works(
    sandbox: Sandbox,
) -> None:
    with pytest.raises(ResourceLimitExceeded, match=r"resource_limit: memory: a bomb needed more"):
        sandbox.call("a bomb", allocate, 2048)
    assert sandbox.call("a small allocation", allocate, 8) == 8 * 2**20


def test_a_call_over_the_time_limit_is_killed(sandbox: Sandbox) -> None:
    before = sandbox.call("a pid", child_pid)
    with pytest.raises(ResourceLimitExceeded, match=r"resource_limit: time: a loop took longer"):
        sandbox.call("a loop", sleep_for, 30)
    assert sandbox.call("a pid", child_pid) != before  # a fresh child


def test_a_crashing_parser_kills_only_the_child(sandbox: Sandbox) -> None:
    with pytest.raises(ResourceLimitExceeded, match=r"SIGSEGV"):
        sandbox.call("a bad page", crash)
    assert sandbox.call("a small allocation", allocate, 1) == 2**20


def test_the_parsers_own_errors_come_back_as_they_were(sandbox: Sandbox) -> None:
    with pytest.raises(PoisonInput, match="not a readable PDF") as caught:
        sandbox.call("a page count", refuse)
    assert not isinstance(caught.value, ResourceLimitExceeded)


def test_pypdf_stream_caps_are_set_in_the_child(sandbox: Sandbox) -> None:
    assert sandbox.call("pypdf caps", _zlib_cap) == 16 * 2**20


def _zlib_cap() -> int:
    import pypdf

    return pypdf.get_configuration().zlib_maximum_output_length


def parsers_loaded() -> bool:
    import sys

    return "pypdfium2" in sys.modules and "streams.adapters.extractors" in sys.modules


def test_a_started_sandbox_has_its_child_and_parsers_ready_before_the_first_call() -> None:
    box = Sandbox(Limits(memory_mb=512, seconds=30.0, decoded_stream_mb=16))
    try:
        box.start()
        started = box._process.pid
        assert box.call("checking", parsers_loaded) is True
        assert box.call("checking", child_pid) == started  # the same child, not a new one
    finally:
        box.close()
