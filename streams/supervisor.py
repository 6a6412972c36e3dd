"""One process supervisor: each app as a child process, restarted when it exits on its own.

`docstreams run all` runs the apps under it as production would run them (a crash loop stops
everything); the chaos harness runs them under it too, killing and restarting children on
purpose while the supervisor restarts any that die by themselves.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChildSpec:
    """How to start one child: ``log_path`` None keeps our stdout and stderr."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: Path | None = None
    log_path: Path | None = None


@dataclass(frozen=True)
class RestartPolicy:
    delay_s: float = 2.0
    # A child exiting within ``quick_exit_s`` of its start ``max_quick_exits`` times in a row is
    # a crash loop (bad settings, a missing service): restarting forever would only hide it.
    # None: never give up (the chaos run makes services vanish on purpose).
    quick_exit_s: float = 15.0
    max_quick_exits: int | None = 3


class CrashLoop(Exception):
    """A child kept exiting right after start."""


class Supervisor:
    def __init__(self, specs: Sequence[ChildSpec], policy: RestartPolicy | None = None) -> None:
        self.specs = {spec.name: spec for spec in specs}
        self.policy = policy or RestartPolicy()
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.crashes: Counter[str] = Counter()  # exits on their own, each followed by a restart
        self._held: set[str] = set()  # stopped on purpose: not restarted until `release`
        self._retiring: set[str] = set()  # scaled in: draining, then forgotten
        self._started: dict[str, float] = {}
        self._quick_exits: Counter[str] = Counter()
        self._lock = threading.Lock()

    def start_all(self) -> None:
        with self._lock:
            for name in self.specs:
                self._spawn(name)

    def _spawn(self, name: str) -> None:
        spec = self.specs[name]
        if spec.log_path is None:
            child = subprocess.Popen(list(spec.argv), env=dict(spec.env), cwd=spec.cwd)
        else:
            spec.log_path.parent.mkdir(parents=True, exist_ok=True)
            with spec.log_path.open("ab") as out:
                child = subprocess.Popen(list(spec.argv), env=dict(spec.env), cwd=spec.cwd,
                                         stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        self.children[name] = child
        self._started[name] = time.monotonic()

    def add(self, spec: ChildSpec) -> None:
        """Start one more child (a replica scaled out)."""
        with self._lock:
            self.specs[spec.name] = spec
            self._spawn(spec.name)

    def retire(self, name: str) -> None:
        """SIGTERM one child for good (a replica scaled in): it finishes its batch, commits and
        exits; it is not restarted, and is forgotten once it has exited."""
        with self._lock:
            self._held.add(name)
            self._retiring.add(name)
            if self.children[name].poll() is None:
                self.children[name].send_signal(signal.SIGTERM)

    def members(self) -> list[str]:
        """The children that are not scaled in (one held down by a chaos kill counts, as a
        restarting pod counts in its Deployment's replicas)."""
        with self._lock:
            return [name for name in self.children if name not in self._retiring]

    def restart_exited(self) -> None:
        """Restart every child that exited on its own; raises CrashLoop for a crash loop."""
        self._forget_retired()
        for name, child in list(self.children.items()):
            with self._lock:
                if name in self._held or child.poll() is None:
                    continue
                self._count_exit(name, child.returncode)
            time.sleep(self.policy.delay_s)
            with self._lock:
                if name not in self._held:
                    self.crashes[name] += 1
                    self._spawn(name)

    def _forget_retired(self) -> None:
        with self._lock:
            for name in [n for n in self._retiring if self.children[n].poll() is not None]:
                code = self.children[name].returncode
                if code != 0:
                    log.warning("%s (scaled in) exited with %s", name, code)
                del self.children[name], self.specs[name]
                self._retiring.discard(name)
                self._held.discard(name)

    def _count_exit(self, name: str, code: int | None) -> None:
        policy = self.policy
        quick = time.monotonic() - self._started[name] < policy.quick_exit_s
        self._quick_exits[name] = self._quick_exits[name] + 1 if quick else 0
        if policy.max_quick_exits is not None and self._quick_exits[name] >= policy.max_quick_exits:
            log.error("%s keeps exiting right after start (code %s)", name, code)
            raise CrashLoop(name)
        log.warning("%s exited with %s; restarting", name, code)

    def supervise(self, stop: threading.Event, interval_s: float = 0.5) -> bool:
        """Restart exited children until ``stop`` is set; False after a crash loop."""
        while not stop.wait(interval_s):
            try:
                self.restart_exited()
            except CrashLoop:
                return False
        return True

    def kill(self, name: str) -> None:
        """SIGKILL one child and hold it down until `release`."""
        with self._lock:
            self._held.add(name)
            self.children[name].send_signal(signal.SIGKILL)
            self.children[name].wait(30)

    def release(self, name: str) -> None:
        """Start a held child again."""
        with self._lock:
            self._spawn(name)
            self._held.discard(name)

    def stop_all(self, timeout_s: float) -> int:
        """SIGTERM every child (each drains its batch and leaves its group), SIGKILL the ones
        still running after ``timeout_s``; the highest exit code."""
        with self._lock:
            self._held.update(self.children)  # nothing is restarted from here on
            for child in self.children.values():
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            codes = []
            for name, child in self.children.items():
                try:
                    codes.append(child.wait(max(0.0, deadline - time.monotonic())))
                except subprocess.TimeoutExpired:
                    log.error("%s did not stop within %.0fs; killing it", name, timeout_s)
                    child.kill()
                    codes.append(child.wait())
        return max(codes, default=0)
