"""The parser sandbox: a child process under memory and time limits that may die alone."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.adapters import extractors
from streams.adapters.sandbox import Limits, Sandbox, imported_modules
from streams.errors import PoisonInput, ResourceLimitExceeded
from streams.memory import resident_mb
from streams.settings import Settings
from tests.kafka_helpers import wait_for
from tests.pdfs import numbered_pages, write_pdf


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


def hold(megabytes: int, seconds: float) -> int:
    """Touches ``megabytes`` MB (resident, not only reserved) and keeps them ``seconds``."""
    import time

    held = b"\x01" * (megabytes * 2**20)
    time.sleep(seconds)
    return len(held)


def own_resident_mb() -> float:
    return resident_mb()


def _resident_of_a_child() -> int:
    """With this module imported in it, as calls of its functions do."""
    box = Sandbox(Limits(memory_mb=1024, seconds=20.0, decoded_stream_mb=16))
    try:
        return int(box.call("its resident memory", own_resident_mb))
    finally:
        box.close()


def test_a_call_over_the_resident_budget_is_killed_while_it_runs_and_the_next_call_works() -> None:
    # The child's own start (this test module's imports) plus 64 MB. The address-space cap
    # would allow the big hold: only the parent's watch on resident memory stops it.
    budget = _resident_of_a_child() + 64
    box = Sandbox(Limits(memory_mb=1024, seconds=20.0, decoded_stream_mb=16, resident_mb=budget))
    try:
        before = box.call("a pid", child_pid)
        assert box.call("a small hold", hold, 16, 0.2) == 16 * 2**20  # under the budget
        with pytest.raises(
            ResourceLimitExceeded,
            match=rf"resource_limit: memory: a big hold needed more than {budget} MB resident",
        ):
            box.call("a big hold", hold, 200, 15.0)
        assert box.call("a pid", child_pid) != before  # a fresh child
        assert box.call("a small hold", hold, 16, 0.2) == 16 * 2**20
    finally:
        box.close()


_HELD: list[bytes] = []  # in the child: what grow_after left behind


def grow_after(megabytes: int, seconds: float) -> None:
    """Returns at once; a moment later the child takes ``megabytes`` MB and keeps them."""
    import threading
    import time

    def grow() -> None:
        time.sleep(seconds)
        _HELD.append(b"\x01" * (megabytes * 2**20))

    threading.Thread(target=grow, daemon=True).start()


def test_memory_a_child_holds_between_calls_is_not_charged_to_the_next_call() -> None:
    budget = _resident_of_a_child() + 64
    box = Sandbox(Limits(memory_mb=1024, seconds=20.0, decoded_stream_mb=16, resident_mb=budget))
    try:
        before = box.call("a pid", child_pid)
        box.call("a call that leaves memory behind", grow_after, 200, 0.2)
        wait_for(lambda: budget < resident_mb(before) < float("inf"), timeout_s=20)
        # Idle over its budget: the next call gets a fresh child instead of the blame.
        assert box.call("a small hold", hold, 8, 0.2) == 8 * 2**20
        assert box.call("a pid", child_pid) != before
    finally:
        box.close()


def test_a_call_over_the_time_limit_is_killed_under_a_resident_budget_too() -> None:
    box = Sandbox(Limits(memory_mb=1024, seconds=2.0, decoded_stream_mb=16, resident_mb=4096))
    try:
        with pytest.raises(ResourceLimitExceeded, match=r"resource_limit: time: a loop took"):
            box.call("a loop", sleep_for, 30)
    finally:
        box.close()


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


def test_pypdf_is_capped_from_the_childs_first_pdf_and_not_loaded_before(tmp_path: Path) -> None:
    box = Sandbox(Limits(memory_mb=512, seconds=30.0, decoded_stream_mb=16))
    try:
        box.start()  # the parsers loaded, as a stage starts its child
        assert box.call("is pypdf loaded", _pypdf_loaded) is False
        pdf = write_pdf(tmp_path / "one.pdf", ["The tide turns at noon."])
        assert box.call("a pypdf reader's caps", _zlib_cap_with_a_reader, pdf) == 16 * 2**20
    finally:
        box.close()


def _pypdf_loaded() -> bool:
    import sys

    return "pypdf" in sys.modules


def _zlib_cap_with_a_reader(path: Path) -> int:
    import pypdf

    from streams.adapters.extractors import _open_pypdf

    _open_pypdf(path).stream.close()
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


def test_the_parser_child_reads_a_pdf_without_importing_pydantic_or_the_settings(
    tmp_path: Path,
) -> None:
    # The child's imports are resident for its whole life, next to pdfium's memory: pydantic
    # and the message models would be ~17 MB of it. It returns plain PageText.
    path = write_pdf(tmp_path / "book.pdf", numbered_pages(3, "harbour"))
    box = Sandbox.for_parsing(Settings())
    try:
        box.start()
        pages = box.call("a window", extractors.pdf_window, "pypdfium2", path, 2, 3)
        modules = box.call("its modules", imported_modules)
    finally:
        box.close()
    assert [p.number for p in pages] == [2, 3] and "harbour" in pages[0].text.lower()
    assert {"pypdfium2", "streams.adapters.extractors"} <= set(modules)
    heavy = [m for m in modules if m.split(".")[0] == "pydantic"
             or m in ("streams.messages", "streams.settings")]  # fmt: skip
    assert heavy == []
