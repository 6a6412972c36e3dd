"""The stage apps' process supervision (`docstreams run all`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from streams.cli import app
from streams.fold import decode_tracked
from streams.messages import DocumentDeleted
from streams.pipeline import APPS
from streams.producer import request_delete
from streams.settings import Settings, as_environment
from tests.apps_helpers import TENANT, free_port_block, isolated, running_apps
from tests.kafka_helpers import read_topic, wait_for, with_topics

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.stack
def test_run_all_gives_up_on_a_stage_that_keeps_crashing(settings: Settings) -> None:
    env = {
        **os.environ,
        **as_environment(settings),
        "DOCSTREAMS_FETCH_ALLOWLIST": '["not-a-network"]',
    }  # only download chokes on it
    done = subprocess.run([sys.executable, "-m", "streams", "run", "all"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=180)  # fmt: skip
    assert done.returncode == 1
    assert "download keeps exiting right after start" in done.stderr


def test_an_unknown_app_is_a_clear_error() -> None:
    result = CliRunner().invoke(app, ["run", "transmogrify"])
    assert result.exit_code == 1
    assert "unknown app 'transmogrify'" in result.stderr


@pytest.mark.stack
def test_replicas_of_a_stage_run_as_processes_of_their_own_with_their_own_instance_ids(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    settings = isolated(stack_settings, tmp_path_factory, "replicas")
    with running_apps(settings, replicas={"extract": 3}) as supervisor:
        wait_for(
            lambda: len(supervisor.children()) == len(APPS) + 2, timeout_s=60
        )  # 2 more extract
        extracts = [p for p in supervisor.children() if p.cmdline()[-1:] == ["extract"]]
        instances = sorted(p.environ()["DOCSTREAMS_INSTANCE_ID"] for p in extracts)
        others = [p.cmdline()[-1] for p in supervisor.children() if p not in extracts]
    assert instances == ["local", "local-2", "local-3"]  # distinct transactional ids
    assert sorted(others) == sorted(a for a in APPS if a != "extract")


def test_a_malformed_replicas_option_is_a_clear_error() -> None:
    result = CliRunner().invoke(app, ["run", "all", "--replicas", "extract=zero"])
    assert result.exit_code == 1
    assert "expected APP=N" in result.stderr


@pytest.mark.stack
@pytest.mark.parametrize("stage", ["download", "index"])
def test_a_stage_stopped_by_sigterm_closes_its_weaviate_client_and_exits_cleanly(
    stage: str, stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    settings = with_topics(isolated(stack_settings, tmp_path_factory, f"close{stage}",
                                    metrics_port=free_port_block(1)))  # fmt: skip

    def connected() -> None:  # to Weaviate at its start
        wait_for(lambda: _answers(f"http://127.0.0.1:{settings.metrics_port}/readyz"), 90)

    _assert_stops_cleanly_on_sigterm(settings, stage, connected)


@pytest.mark.stack
def test_the_tracker_stopped_by_sigterm_closes_its_weaviate_client_and_exits_cleanly(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    settings = with_topics(isolated(stack_settings, tmp_path_factory, "closetracker",
                                    tracker_port=free_port_block(1)))  # fmt: skip

    def connected() -> None:
        wait_for(lambda: _answers(f"http://127.0.0.1:{settings.tracker_port}/readyz"), 120)
        # A delete makes the tracker remove the document's objects: its Weaviate client connects.
        request_delete(settings, TENANT, "gone")
        wait_for(lambda: any(isinstance(m, DocumentDeleted) and m.document_id == "gone"
                             for m in map(decode_tracked, read_topic(settings, "events"))),
                 timeout_s=90)  # fmt: skip

    _assert_stops_cleanly_on_sigterm(settings, "tracker", connected)


def _assert_stops_cleanly_on_sigterm(
    settings: Settings, app_name: str, until_connected: Callable[[], None]
) -> None:
    """``streams run <app_name>``, once ``until_connected()`` returns, stopped by SIGTERM: exit
    0 and no ResourceWarning on its stderr."""
    env = {**os.environ, **as_environment(settings)}
    argv = [sys.executable, "-W", "always::ResourceWarning", "-m", "streams", "run", app_name]
    child = subprocess.Popen(argv, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        until_connected()
        child.send_signal(signal.SIGTERM)
        _, stderr = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 0, stderr
    assert "was not closed properly" not in stderr  # the Weaviate client's own warning
    assert "ResourceWarning: unclosed" not in stderr, stderr


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
