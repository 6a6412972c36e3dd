"""The one process supervisor (`run all` and the chaos run): restarts, crash loops, children
held down on purpose, and stopping."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from streams.supervisor import ChildSpec, RestartPolicy, Supervisor

AT_ONCE = RestartPolicy(delay_s=0.0, max_quick_exits=None)


def _child(name: str, code: str, log_path: Path | None = None) -> ChildSpec:
    return ChildSpec(name, [sys.executable, "-c", code], dict(os.environ), log_path=log_path)


def _wait_until(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert condition(), "timed out"


def test_a_child_that_exits_on_its_own_is_restarted(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    code = f"open({str(starts)!r}, 'a').write('x')"
    supervisor = Supervisor([_child("once", code)], AT_ONCE)
    supervisor.start_all()

    def restarted() -> bool:
        supervisor.restart_exited()
        return starts.exists() and len(starts.read_text()) >= 3

    _wait_until(restarted)
    assert supervisor.crashes["once"] >= 2
    supervisor.stop_all(5)


def test_a_child_that_keeps_exiting_right_after_start_stops_the_supervision() -> None:
    policy = RestartPolicy(delay_s=0.0, quick_exit_s=60.0, max_quick_exits=3)
    supervisor = Supervisor([_child("broken", "raise SystemExit(2)")], policy)
    supervisor.start_all()
    stop = threading.Event()
    bound = threading.Timer(30, stop.set)  # should it never give up
    bound.start()
    began = time.monotonic()

    assert supervisor.supervise(stop, interval_s=0.05) is False
    bound.cancel()
    assert time.monotonic() - began < 30
    assert supervisor.crashes["broken"] == 2  # restarted twice, then the third exit ends it
    assert supervisor.stop_all(5) == 2


def test_a_killed_child_stays_down_until_released() -> None:
    supervisor = Supervisor([_child("sleeper", "import time; time.sleep(60)")], AT_ONCE)
    supervisor.start_all()
    first = supervisor.children["sleeper"]

    supervisor.kill("sleeper")
    supervisor.restart_exited()
    assert first.returncode == -signal.SIGKILL
    assert supervisor.children["sleeper"] is first and supervisor.crashes["sleeper"] == 0

    supervisor.release("sleeper")
    assert supervisor.children["sleeper"] is not first
    assert supervisor.children["sleeper"].poll() is None
    assert supervisor.stop_all(10) == -signal.SIGTERM


def test_stopping_kills_a_child_that_ignores_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "stubborn.log"
    code = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(60)")  # fmt: skip
    supervisor = Supervisor([_child("stubborn", code, log)], AT_ONCE)
    supervisor.start_all()
    _wait_until(lambda: log.exists() and "ready" in log.read_text())

    began = time.monotonic()
    assert supervisor.stop_all(0.5) == -signal.SIGKILL
    assert time.monotonic() - began < 10
