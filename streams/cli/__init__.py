"""The `docstreams` command line: the product's commands, plus those of installed plugins."""

from __future__ import annotations

# Imported for their commands, which they add to the root app.
from streams.cli import configuration, documents, operations  # noqa: F401
from streams.cli.plugins import add_plugins
from streams.cli.root import app, clear_errors, console

add_plugins(app)

__all__ = ["app", "clear_errors", "console"]
