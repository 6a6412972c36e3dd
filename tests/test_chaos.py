"""The chaos run as a test, smaller than `bench/chaos.py`'s default (select with -m chaos)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from docstreams_dev.chaos import ChaosPlan, passed, run

pytestmark = pytest.mark.chaos


def test_kills_a_broker_restart_an_outage_and_kills_during_edits_leave_the_index_exactly_right(
    tmp_path: Path,
) -> None:
    summary = run(ChaosPlan(kills=8, broker_restarts=1, weaviate_outage_s=8.0, seed=7, pages=300,
                            timeout_s=600.0, workdir=tmp_path, edit_kills=4))  # fmt: skip
    # As a string: pytest cuts a dict's repr short, and a failure must say which check failed.
    shown = orjson.dumps(summary, default=str).decode()
    assert passed(summary), shown
    assert summary["kills"] >= 4 and summary["broker_restarts"] == 1, shown
    # The edited versions were indexed (compared with the clean run's edits) under kills.
    assert summary["edited"] == ["assembled", "handbook", "logbook"], summary
    assert summary["kills_in_edit_round"] >= 1, summary
