"""Running `docstreams run all` (every stage and the tracker, each its own process) in tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from streams.kafka_clients import admin_client
from streams.settings import Settings, as_environment
from streams.topics import create_topics

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def running_apps(settings: Settings) -> Iterator[psutil.Process]:
    """Create the topics, start `run all`; yields the supervisor; SIGTERM and wait at the end."""
    create_topics(admin_client(settings), settings)
    env = {**os.environ, **as_environment(settings)}
    child = subprocess.Popen([sys.executable, "-m", "streams", "run", "all"], env=env, cwd=ROOT)
    try:
        yield psutil.Process(child.pid)
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(90)
        except subprocess.TimeoutExpired:
            for proc in psutil.Process(child.pid).children(recursive=True):
                proc.kill()
            child.kill()


def app_process(supervisor: psutil.Process, name: str) -> psutil.Process | None:
    """The running child of `run all` for one app (`streams run <name>`)."""
    found = [p for p in supervisor.children() if p.cmdline()[-1:] == [name]]
    return found[0] if found else None
