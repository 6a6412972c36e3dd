"""The README's main command, end to end: it must end with the sample's sentence found."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from streams.settings import Settings, as_environment

pytestmark = pytest.mark.stack
ROOT = Path(__file__).resolve().parents[1]


def test_demo_ingests_the_sample_and_prints_the_hit_with_its_page(
    stack_settings: Settings, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    settings = stack_settings.model_copy(
        update={"topic_prefix": f"demo{run}.", "weaviate_collection": f"Demo{run}",
                "blob_dir": tmp_path / "blobs", "state_dir": stack_settings.state_dir}
    )  # fmt: skip
    env = {**os.environ, **as_environment(settings), "COLUMNS": "200"}
    done = subprocess.run(["bash", "scripts/demo"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "✓ harbour-handbook: 1 windows" in out
    top = next(line for line in out.splitlines() if "harbour-handbook" in line and "│" in line)
    cells = [c.strip() for c in top.split("│")]
    assert cells[3] == "3"  # the page of the known sentence
    # The table wraps the top hit's text over the next lines, whose score cell is empty.
    lines = out.splitlines()
    text = [cells[4]]
    for line in lines[lines.index(top) + 1 :]:
        row = [c.strip() for c in line.split("│")]
        if len(row) < 5 or row[1]:
            break
        text.append(row[4])
    assert "forty-two blue lanterns" in " ".join(text)
