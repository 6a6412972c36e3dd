"""Development tooling for docstreams, outside the product wheel: the local stack (Kafka from
Maven jars, Weaviate built with Go), the chaos harness, and the local servers that tests and
benchmarks run against. Installed editable from a checkout (scripts/bootstrap); when it is
installed, `docstreams` gains its `stack` and `chaos` commands (streams/cli/plugins.py)."""

from __future__ import annotations

from pathlib import Path

# The checkout this package is installed from (editable): its samples, and the working
# directory of the apps the chaos run starts.
CHECKOUT = Path(__file__).resolve().parents[2]
