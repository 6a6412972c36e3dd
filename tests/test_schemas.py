"""Message schemas: valid requests pass, invalid ones are refused with the field named."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from streams.messages import WIRE_TYPES
from streams.schemas import InvalidMessage, file_name, message_types, render, validate, validator

ROOT = Path(__file__).resolve().parents[1]


def _submitted(**changes: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "schema_version": 1,
        "type": "DocumentSubmitted",
        "tenant_id": "acme_legal-1",
        "document_id": "case-42:exhibit.pdf",
        "source": "https://files.example/exhibit.pdf",
        "callback_url": "https://hooks.example/docstreams",
        "metadata": {"case_id": "42"},
        "submitted_at": "2026-11-23T10:00:00Z",
    }
    message.update(changes)
    return {k: v for k, v in message.items() if v is not None}


def test_a_complete_document_request_is_valid() -> None:
    validate("DocumentSubmitted", _submitted())


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"tenant_id": "acme corp"}, "$.tenant_id"),
        ({"tenant_id": "x" * 65}, "$.tenant_id"),
        ({"document_id": "../../etc/passwd"}, "$.document_id"),
        ({"schema_version": 2}, "$.schema_version"),
        ({"submitted_at": "yesterday"}, "$.submitted_at"),
        ({"callback_url": "ftp://hooks.example/x"}, "$.callback_url"),
        ({"metadata": {"case id": "42"}}, "$.metadata"),
        ({"signing_key": "secret"}, "signing_key"),  # secrets have no place in messages
        ({"source": None}, "'source' is a required property"),
    ],
)
def test_an_invalid_request_is_refused_naming_the_field(change: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidMessage, match="DocumentSubmitted does not match") as caught:
        validate("DocumentSubmitted", _submitted(**change))
    assert named in str(caught.value)


def test_every_schema_file_is_valid_and_versioned() -> None:
    files = sorted((ROOT / "schemas").glob("*.schema.json"))
    assert files and len(files) == len(message_types())
    for title in message_types():
        schema = validator(title).schema
        assert isinstance(schema, dict)
        assert schema["properties"]["schema_version"]["const"] >= 1
        assert schema["additionalProperties"] is False


def test_the_wheel_ships_the_schemas_and_no_development_tooling(tmp_path: Path) -> None:
    # Built from a copy of the sources: setuptools reuses a checkout's build/ directory, where a
    # module deleted since the last build would still be found and shipped.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for folder in ("streams", "schemas", "dev"):
        shutil.copytree(ROOT / folder, source / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
        check=True,
    )
    (wheel,) = tmp_path.glob("docstreams-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "streams_schemas/document_submitted.schema.json" in names
    # Every module of the product ships (a subpackage missing from pyproject's list would not).
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "streams").rglob("*.py")}
    assert modules <= set(names), sorted(modules - set(names))
    # The local stack (Maven and Go installers), the chaos harness and the test servers are
    # docstreams-dev's (dev/), never the product's.
    tooling = [n for n in names if n.startswith(("docstreams_dev/", "streams/stack/"))]
    assert not tooling and "streams/chaos.py" not in names, tooling


def test_schema_files_are_the_ones_generated_from_the_models() -> None:
    for model in WIRE_TYPES:
        path = ROOT / "schemas" / file_name(model.__name__)
        assert path.read_bytes() == render(model), f"{path.name} is stale: run scripts/sync-docs"
