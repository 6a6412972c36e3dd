"""`docstreams status` as printed: how long a document has been in its phase, its encoding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console

from streams.status_client import print_status


def _state(phase: str, since: datetime | None) -> dict[str, Any]:
    return {
        "tenant_id": "acme", "document_id": "d1", "phase": phase, "version": "a" * 64,
        "windows": {"planned": 6, "extracted": 6, "chunked": 6, "embedded": 6, "indexed": 5},
        "pages": 60, "chunks": 40, "tokens_spent": 9000, "reused_unchanged": False,
        "phase_since": since.isoformat() if since else None,
    }  # fmt: skip


def _printed(state: dict[str, Any]) -> str:
    console = Console(width=120, record=True)
    print_status(state, console)
    return console.export_text()


def test_status_shows_how_long_the_document_has_been_in_its_phase() -> None:
    since = datetime.now(UTC) - timedelta(minutes=3, seconds=12)
    assert "indexing for 3m 12s" in _printed(_state("indexing", since))
    hours = datetime.now(UTC) - timedelta(hours=2, minutes=5)
    assert "embedding for 2h 5m" in _printed(_state("embedding", hours))


def test_status_of_a_state_without_phase_time_shows_the_phase_alone() -> None:
    printed = _printed(_state("queued", None))
    assert "queued" in printed and " for " not in printed


def test_status_names_the_encoding_legacy_text_came_in() -> None:
    legacy = _printed(_state("completed", None) | {"encoding": "cp1252"})
    assert "encoding" in legacy and "cp1252" in legacy
    assert "encoding" not in _printed(_state("completed", None) | {"encoding": "utf-8"})
