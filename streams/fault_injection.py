"""Crash points for tests: kill the tracker at one exact step of handling one document's event.

Tests only. The tracker reads ``DOCSTREAMS_TEST_CRASH_PLAN`` (a file path) at start and imports
this module only when it is set; unset, as in production, a crash point costs one check. The
plan file holds ``<point> <tenant>/<document>``; the first event of that document whose fold
asks for a side effect (the completion check, a callback, a delete) kills the process with
SIGKILL at that point (or, for ``drop_event``, skips the event as a lost delivery would). The
file is renamed to ``<plan>.done`` first, so the restarted process does not crash again on the
replayed event, and the test can wait for the crash by that name.
"""

from __future__ import annotations

import os
import signal
from enum import StrEnum
from pathlib import Path

import orjson

PLAN_VARIABLE = "DOCSTREAMS_TEST_CRASH_PLAN"


class CrashPoint(StrEnum):
    AFTER_FOLD = "after_fold"  # the new state is known; no side effect has run
    AFTER_EFFECTS = "after_effects"  # index counted, version switched; outputs not yet sent
    AFTER_SEND = "after_send"  # outputs acknowledged by the broker; state not yet written
    AFTER_TABLE_WRITE = "after_table_write"  # state durable in the changelog; offset not committed
    DROP_EVENT = "drop_event"  # not a crash: the event is never folded (a lost delivery)


class CrashPlan:
    def __init__(self, path: Path | None) -> None:
        self.path = path

    @classmethod
    def from_environment(cls) -> CrashPlan:
        value = os.environ.get(PLAN_VARIABLE)
        return cls(Path(value) if value else None)

    @staticmethod
    def write(path: Path, point: CrashPoint, key: str) -> None:
        """What a test calls: crash at ``point`` on ``key``'s next event with an effect."""
        path.write_bytes(orjson.dumps({"point": point.value, "key": key}))

    def due(self, point: str, key: str) -> bool:
        """Whether to crash here; True only once (the plan is then marked done)."""
        if self.path is None or not self.path.exists():
            return False
        try:
            plan = orjson.loads(self.path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return False  # being written by the test: the next event will see it whole
        if plan.get("point") != point or plan.get("key") != key:
            return False
        self.path.rename(self.path.with_name(self.path.name + ".done"))
        return True

    @staticmethod
    def crash() -> None:
        os.kill(os.getpid(), signal.SIGKILL)
