"""The product stands apart from its development tooling: `docstreams run <stage>` imports
nothing of the local stack, the chaos harness or the test servers, and docstreams-dev's
commands join the CLI only through its entry point."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from streams.cli import plugins

ROOT = Path(__file__).resolve().parents[1]
TOOLING = ("docstreams_dev.stack", "docstreams_dev.chaos", "docstreams_dev.servers",
           "docstreams_dev.media", "docstreams_dev.apps")  # fmt: skip


def test_no_product_module_imports_the_development_package() -> None:
    importers = []
    for path in (ROOT / "streams").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(name.split(".")[0] == "docstreams_dev" for name in names):
                importers.append(str(path.relative_to(ROOT)))
    assert not importers


def test_running_a_stage_imports_none_of_the_tooling() -> None:
    # What `docstreams run embed` imports before it connects: the CLI with the plugins'
    # commands (as streams.cli.main joins them), the app runner and the embed stage.
    code = f"""
import importlib, sys
from importlib.metadata import entry_points
from streams.cli import app
from streams.cli.plugins import add_plugins
add_plugins(app)
import streams.apps
from streams.pipeline import STAGE_SPECS
importlib.import_module(STAGE_SPECS["embed"].module)
plugged = bool(entry_points(group="docstreams.cli"))
dev = sorted(m for m in sys.modules if m.split(".")[0] == "docstreams_dev")
assert dev == (["docstreams_dev", "docstreams_dev.cli"] if plugged else []), dev
# The commands docstreams-dev adds import its tooling only when they run.
import typer
from docstreams_dev.cli import register
register(typer.Typer())
tooling = [m for m in sys.modules if m.startswith({TOOLING!r})]
assert not tooling, tooling
assert "streams.stack" not in sys.modules and "streams.chaos" not in sys.modules
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "dev")])}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env)


def test_the_dev_distribution_adds_its_commands_through_the_entry_point(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    declared = tomllib.loads((ROOT / "dev" / "pyproject.toml").read_text())
    group = declared["project"]["entry-points"][plugins.GROUP]
    found = [EntryPoint(name, value, plugins.GROUP) for name, value in group.items()]
    monkeypatch.setattr(plugins, "entry_points", lambda group: found)
    app = typer.Typer()
    app.command("noop")(lambda: None)  # a second command: Typer then lists them by name

    assert plugins.add_plugins(app) == list(group)
    usage = CliRunner().invoke(app, ["--help"]).output
    assert "stack" in usage and "chaos" in usage
    assert "up" in CliRunner().invoke(app, ["stack", "--help"]).output
