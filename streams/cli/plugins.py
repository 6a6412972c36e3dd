"""Commands from other installed distributions, joined to `docstreams` only when installed.

A distribution declares an entry point in the group ``docstreams.cli`` naming a callable that
takes the root Typer app and adds its commands (docstreams-dev adds `stack` and `chaos`).
Nothing here imports such a distribution unless it is installed.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points

import typer

GROUP = "docstreams.cli"


def add_plugins(app: typer.Typer) -> list[str]:
    """Let every installed plugin add its commands; the names of those loaded."""
    loaded = []
    for entry_point in entry_points(group=GROUP):
        register: Callable[[typer.Typer], None] = entry_point.load()
        register(app)
        loaded.append(entry_point.name)
    return loaded
