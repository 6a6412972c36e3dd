"""`docstreams run all` (every stage and the tracker, each its own process) in a child process,
for tests and benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from docstreams_dev import CHECKOUT
from streams.kafka_clients import admin_client
from streams.settings import Settings, as_environment
from streams.topics import create_topics


@contextmanager
def running_apps(
    settings: Settings,
    output: Path | None = None,
    replicas: dict[str, int] | None = None,
    environment: dict[str, str] | None = None,
    autoscale: bool = False,
) -> Iterator[psutil.Process]:
    """Create the topics, start `run all`; yields the supervisor; SIGTERM and wait at the end.
    With ``output``, every app's stdout and stderr go to that file; ``replicas``: processes per
    stage (`--replicas extract=2`); ``environment``: more variables for every app; ``autoscale``:
    `--autoscale`."""
    create_topics(admin_client(settings), settings)
    env = {**os.environ, **as_environment(settings), **(environment or {})}
    sink = output.open("ab") if output else None
    child = subprocess.Popen(
        [sys.executable, "-m", "streams", "run", "all",
         *(f"--replicas={name}={n}" for name, n in (replicas or {}).items()),
         *(["--autoscale"] if autoscale else [])],
        env=env, cwd=CHECKOUT, stdout=sink, stderr=subprocess.STDOUT if sink else None,
    )  # fmt: skip
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
        if sink:
            sink.close()


def app_process(supervisor: psutil.Process, name: str) -> psutil.Process | None:
    """The running child of `run all` for one app (`streams run <name>`)."""
    found = [p for p in supervisor.children() if p.cmdline()[-1:] == [name]]
    return found[0] if found else None
