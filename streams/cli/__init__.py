"""The `docstreams` command line: the product's commands, plus those of installed plugins."""

from __future__ import annotations

# Imported for their commands, which they add to the root app.
from streams.cli import configuration, documents, operations  # noqa: F401
from streams.cli.plugins import add_plugins
from streams.cli.root import app, clear_errors, console


def main() -> None:
    """`docstreams` (the console script, and `python -m streams`): the product's commands and
    those of installed plugins. Plugins join here, not at import, so a plugin may import
    streams.cli itself."""
    add_plugins(app)
    app()


__all__ = ["app", "clear_errors", "console", "main"]
