"""The stage apps' process supervision (`docstreams run all`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streams.cli import app
from streams.settings import Settings, as_environment

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
