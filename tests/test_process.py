"""Pid files: a service is ours only if pid and start time both match."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import orjson

from docstreams_dev.stack import process


def test_a_recycled_pid_is_not_taken_for_our_service(tmp_path: Path) -> None:
    pid_file = tmp_path / "svc.pid"
    # Our own pid, but a start time that is not ours: as after a reboot or pid reuse.
    pid_file.write_bytes(orjson.dumps({"pid": os.getpid(), "started": 1.0, "argv": "x"}))
    assert process.running_process(pid_file) is None
    assert not pid_file.exists()  # stale records are cleaned up


def test_spawned_service_is_tracked_until_stopped(tmp_path: Path) -> None:
    pid_file, log = tmp_path / "svc.pid", tmp_path / "logs" / "svc.out"
    script = "import time; print('up', flush=True); time.sleep(60)"
    pid = process.spawn(
        [sys.executable, "-c", script],
        env=dict(os.environ),
        cwd=tmp_path,
        log_path=log,
        pid_path=pid_file,
    )
    proc = process.running_process(pid_file)
    assert proc is not None and proc.pid == pid
    assert os.getsid(pid) != os.getsid(0)  # detached: Ctrl-C in our terminal won't reach it
    deadline = time.monotonic() + 10
    while "up" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "up" in log.read_text()  # its output goes to the log file

    assert process.stop(pid_file, timeout_s=10) is True
    assert process.running_process(pid_file) is None
    assert process.stop(pid_file, timeout_s=10) is False
