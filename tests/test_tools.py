"""A missing or too old Java, Maven or Go is named in one clear line, never a traceback."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from docstreams_dev.cli import stack_app
from docstreams_dev.errors import MissingToolError
from docstreams_dev.stack import tools


def _fake_program(bin_dir: Path, name: str, output: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\necho '{output}' >&2\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_missing_java_names_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingToolError, match=r"Java 17\+ .*apt-get install -y openjdk-17"):
        tools.require_java()


def test_java_8_is_refused_as_too_old(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_program(tmp_path, "java", 'openjdk version "1.8.0_402"')
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingToolError, match="is Java 8"):
        tools.require_java()


def test_old_go_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_program(tmp_path, "go", "go1.19.8")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingToolError, match=r"Go 1\.26\+ .* is Go 1\.19"):
        tools.require_go()


def test_stack_install_without_maven_prints_one_line(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path / "empty"), "DOCSTREAMS_CACHE_DIR": str(tmp_path / "cache")}
    result = CliRunner().invoke(stack_app, ["install"], env={**os.environ, **env})
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "is not on PATH" in lines[0]
    assert "Traceback" not in result.output
