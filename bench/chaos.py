"""The chaos run (same as `docstreams chaos`): kills, a broker restart, a Weaviate outage, and
a comparison with a clean reference run. See dev/docstreams_dev/chaos/.

    .venv/bin/python bench/chaos.py --kills 30 --seed 1

Prints one JSON line last; exits 1 if anything is duplicated, missing, mismatched or unfinished.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from docstreams_dev.cli import chaos_command

if __name__ == "__main__":
    typer.run(chaos_command)
