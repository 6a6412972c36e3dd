"""The chaos run (same as `docstreams chaos`): kills, a broker restart, a Weaviate outage, and
a comparison with a clean reference run. See streams/chaos.py.

    .venv/bin/python bench/chaos.py --kills 30 --seed 1

Prints one JSON line last; exits 1 if anything is duplicated, missing, mismatched or unfinished.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streams.cli import app

if __name__ == "__main__":
    app(["chaos", *sys.argv[1:]])
