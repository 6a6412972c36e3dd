"""Parsing strangers' files in a child process that may die without taking the stage with it.

The child runs under an address-space limit (RLIMIT_AS), under a resident-memory budget that
the parent watches while a call runs (what a pod's memory limit counts: the stage and its child
must fit under it together, or the kernel kills the pod and the batch is redone forever), and
each call under a deadline. A decompression bomb, an object-stream loop or a pathological page
then ends as ``ResourceLimitExceeded`` (which limit, what was being parsed) for that one input —
dead-lettered with ``reason: resource_limit: …`` unless the caller can do with less of it (the
extract stage reads a PDF window page by page) — and a fresh child serves the next input. The
child is kept between calls (starting one costs about a second of imports), so the price in the
normal case is one pickle of the call and its result.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, TypeVar

from streams.errors import PoisonInput, ResourceLimitExceeded
from streams.memory import resident_mb

if TYPE_CHECKING:  # the parser child imports this module: the settings stay out of it (~5 MB)
    from streams.settings import ParseSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

# How often the parent reads the child's resident memory while a call runs. pdfium parsing a
# vector-heavy page grows ~115 MB/s (measured), so the budget is overshot by a few MB (one
# single huge allocation can overshoot more: the address-space cap is there for that).
RESIDENT_CHECK_S = 0.02


@dataclass(frozen=True)
class Limits:
    memory_mb: int  # address space of the child process
    seconds: float  # per call
    decoded_stream_mb: int  # pypdf's own caps on one decompressed stream
    resident_mb: int | None = None  # resident memory of the child, watched by the parent


class Sandbox:
    @classmethod
    def for_parsing(cls, settings: ParseSettings) -> Sandbox:
        return cls(
            Limits(
                memory_mb=settings.parser_memory_mb,
                seconds=settings.parser_timeout_s,
                decoded_stream_mb=settings.pdf_max_decoded_stream_mb,
                resident_mb=settings.parser_resident_mb,
            )
        )

    @classmethod
    def for_transcribing(cls, settings: ParseSettings) -> Sandbox:
        """The local speech model reserves far more address space than it touches (~790 MB
        for ~430 MB resident, measured): its own cap, so PDF parsing keeps its tight one."""
        return cls(
            Limits(
                memory_mb=settings.transcriber_memory_mb,
                seconds=settings.transcribe_timeout_s,
                decoded_stream_mb=settings.pdf_max_decoded_stream_mb,
            )
        )

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._process: Any = None
        self._conn: Connection | None = None
        self._lock = threading.Lock()  # one call at a time; the child serves them in order

    def start(self) -> None:
        """Start the child and load the parsers in it now (about a second), so that the first
        document after a start is not the one to wait for it."""
        self.call("starting the parser process", _load_parsers)

    def call(self, what: str, fn: Callable[..., T], *args: Any, seconds: float | None = None) -> T:
        """``fn(*args)`` in the child (``fn`` must be importable by name); its result or its
        exception, or ResourceLimitExceeded if the child ran out of memory or time (``seconds``,
        default: the limits')."""
        limit_s = seconds or self.limits.seconds
        with self._lock:
            conn = self._connection()
            if self._over_budget():
                # What earlier calls left behind (a kept-open PDF's caches, a heap not given
                # back) must not be charged to this one: a fresh child serves it.
                self._kill()
                conn = self._connection()
            conn.send((fn, args))
            self._wait_for_result(conn, what, limit_s)
            try:
                status, payload = conn.recv()
            except (EOFError, OSError):
                code = self._reap()
                if code is not None and -code in (signal.SIGKILL, signal.SIGSEGV, signal.SIGABRT):
                    # What a failed allocation looks like from inside native code.
                    raise ResourceLimitExceeded(
                        "memory", f"{what}: the parser died ({signal.Signals(-code).name}) under "
                        f"a {self.limits.memory_mb} MB memory limit"
                    ) from None  # fmt: skip
                raise PoisonInput(f"{what}: the parser process died (exit code {code})") from None
        if status == "ok":
            result: T = payload
            return result
        if status == "memory":
            self._reap()
            raise ResourceLimitExceeded(
                "memory", f"{what} needed more than {self.limits.memory_mb} MB"
            )
        raise payload

    def close(self) -> None:
        with self._lock:
            self._kill()

    def _wait_for_result(self, conn: Connection, what: str, limit_s: float) -> None:
        """Until the child answers (or dies): killed past the deadline, or as soon as its
        resident memory passes the budget."""
        budget = self.limits.resident_mb
        # Without a budget there is nothing to watch: one wait, to the deadline.
        interval = limit_s if budget is None else RESIDENT_CHECK_S
        deadline = time.monotonic() + limit_s
        while not conn.poll(min(interval, max(0.0, deadline - time.monotonic()))):
            if self._over_budget():
                self._kill()
                raise ResourceLimitExceeded(
                    "memory", f"{what} needed more than {budget} MB resident (PARSER_RESIDENT_MB)"
                )
            if time.monotonic() >= deadline:
                self._kill()
                raise ResourceLimitExceeded("time", f"{what} took longer than {limit_s:g}s")

    def _over_budget(self) -> bool:
        """The child holds more resident memory than its budget. Unknown (no /proc: inf) is
        not over; a child that has died reads as 0 or unknown, and its pipe as EOF."""
        budget = self.limits.resident_mb
        if budget is None or self._process is None:
            return False
        return budget < resident_mb(self._process.pid) < float("inf")

    def _connection(self) -> Connection:
        if self._process is not None and self._process.is_alive() and self._conn is not None:
            return self._conn
        self._kill()
        # spawn: a clean interpreter (no Kafka client threads or sockets inherited by a fork).
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(child, self.limits), daemon=True, name="parser"
        )
        self._process.start()
        child.close()
        self._conn = parent
        return parent

    def _reap(self) -> int | None:
        code = None
        if self._process is not None:
            self._process.join(5)
            code = self._process.exitcode
        self._kill()
        return code

    def _kill(self) -> None:
        if self._process is not None:
            with contextlib.suppress(ValueError, AssertionError):  # never started
                if self._process.is_alive():
                    self._process.kill()
                self._process.join(5)
            self._process = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _serve(conn: Connection, limits: Limits) -> None:
    """The child: limits first, then calls until the parent hangs up."""
    cap = limits.memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    from streams.adapters.extractors import cap_pypdf_streams

    cap_pypdf_streams(limits.decoded_stream_mb * 2**20)
    while True:
        try:
            fn, args = conn.recv()
        except (EOFError, OSError):
            return
        try:
            conn.send(("ok", fn(*args)))
        except MemoryError:
            conn.send(("memory", None))
            os._exit(1)  # the heap may be in any state: start over
        except Exception as exc:
            try:
                conn.send(("error", exc))
            except Exception:  # an exception that cannot be pickled: its text still can
                conn.send(("error", PoisonInput(f"{type(exc).__name__}: {exc}")))


def imported_modules() -> list[str]:
    """What the child has imported: its memory at rest (tests/test_sandbox.py)."""
    return sorted(sys.modules)


def _load_parsers() -> None:
    import pypdfium2  # noqa: F401

    import streams.adapters.extractors  # noqa: F401


__all__ = ["Limits", "ResourceLimitExceeded", "Sandbox"]
