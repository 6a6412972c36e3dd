"""The chaos run: `docstreams chaos` (with docstreams-dev installed), bench/chaos.py, and
tests/test_chaos.py."""

from __future__ import annotations

from docstreams_dev.chaos.plan import TENANT, ChaosPlan, build_documents, passed
from docstreams_dev.chaos.run import ingest, run

__all__ = ["TENANT", "ChaosPlan", "build_documents", "ingest", "passed", "run"]
