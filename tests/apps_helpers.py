"""Running `docstreams run all` (every stage and the tracker, each its own process) in tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest

from streams.kafka_clients import admin_client
from streams.settings import Settings, as_environment
from streams.topics import create_topics

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def running_apps(
    settings: Settings,
    output: Path | None = None,
    replicas: dict[str, int] | None = None,
    environment: dict[str, str] | None = None,
) -> Iterator[psutil.Process]:
    """Create the topics, start `run all`; yields the supervisor; SIGTERM and wait at the end.
    With ``output``, every app's stdout and stderr go to that file; ``replicas``: processes per
    stage (`--replicas extract=2`); ``environment``: more variables for every app."""
    create_topics(admin_client(settings), settings)
    env = {**os.environ, **as_environment(settings), **(environment or {})}
    sink = output.open("ab") if output else None
    child = subprocess.Popen(
        [sys.executable, "-m", "streams", "run", "all",
         *(f"--replicas={name}={n}" for name, n in (replicas or {}).items())], env=env, cwd=ROOT,
        stdout=sink, stderr=subprocess.STDOUT if sink else None,
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


def free_port_block(size: int) -> int:
    """A free loopback port with ``size - 1`` free ports after it (`run all` numbers its
    apps' metrics ports from it)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base: int = s.getsockname()[1]
        if base + size < 65535 and all(port_free(base + i) for i in range(size)):
            return base
    raise RuntimeError("no block of free ports")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def isolated(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory, name: str, **changes: Any
) -> Settings:
    """The session stack's settings with topics, a Weaviate collection and a blob store of a
    test module's own (local sources allowed), plus ``changes``."""
    run = uuid.uuid4().hex[:8]
    return stack_settings.model_copy(
        update={
            "topic_prefix": f"{name}{run}.",
            "weaviate_collection": f"{name.capitalize()}{run}",
            "blob_dir": tmp_path_factory.mktemp("blobs"),
            "allow_local_sources": True,
            **changes,
        }
    )
