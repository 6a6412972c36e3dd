"""Reading the tracker's status API (for `docstreams status` and callers in Python)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table

from streams.errors import DocstreamsError
from streams.settings import TrackerSettings

_FINAL = {"completed", "failed", "deleted"}


def document_status(settings: TrackerSettings, tenant_id: str, document_id: str) -> dict[str, Any]:
    url = f"{settings.status_api_url}/documents/{tenant_id}/{document_id}"
    try:
        response = httpx.get(url, timeout=10)
    except httpx.TransportError as exc:
        raise DocstreamsError(
            f"the tracker at {settings.status_api_url} is unreachable: {exc}"
        ) from None
    if response.status_code == 404:
        raise DocstreamsError(f"the tracker knows no document {tenant_id}/{document_id}")
    if response.status_code != 200:
        raise DocstreamsError(f"the tracker answered HTTP {response.status_code}: {response.text}")
    state: dict[str, Any] = response.json()
    return state


def watch_status(
    settings: TrackerSettings,
    tenant_id: str,
    document_id: str,
    console: Console,
    poll_s: float = 1.0,
) -> dict[str, Any]:
    """Poll until the document is completed, failed or deleted, with a progress bar."""
    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                  console=console) as bar:  # fmt: skip
        task = bar.add_task(document_id, total=1.0)
        while True:
            state = document_status(settings, tenant_id, document_id)
            bar.update(
                task, completed=state["progress"], description=f"{document_id}: {state['phase']}"
            )
            if state["phase"] in _FINAL:
                return state
            time.sleep(poll_s)


def _phase_with_age(state: dict[str, Any]) -> str:
    """``indexing for 3m 12s``: how long the document has been in its phase."""
    since = state.get("phase_since")
    if not since:
        return str(state["phase"])
    seconds = max(0, int((datetime.now(UTC) - datetime.fromisoformat(since)).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        age = f"{hours}h {minutes}m"
    else:
        age = f"{minutes}m {seconds}s" if minutes else f"{seconds}s"
    return f"{state['phase']} for {age}"


def print_status(state: dict[str, Any], console: Console) -> None:
    table = Table(show_header=False, box=None)
    windows = state["windows"]
    rows = {
        "document": f"{state['tenant_id']}/{state['document_id']}",
        "phase": _phase_with_age(state),
        "version": (state["version"] or "")[:16],
        "windows": " ".join(f"{k} {v}" for k, v in windows.items() if v is not None),
        "pages": str(state["pages"]),
        "chunks": str(state["chunks"]),
        "tokens spent": str(state["tokens_spent"]),
        "tokens from cache": str(state.get("tokens_from_cache", 0)),
        "reused unchanged": "yes" if state["reused_unchanged"] else "no",
    }
    if state.get("encoding") not in (None, "utf-8"):  # legacy text, stored as UTF-8
        rows["encoding"] = str(state["encoding"])
    if state.get("base_version") and (edit := state.get("edit")):
        rows["edit"] = edit_summary(edit)
    if state.get("error"):
        rows["error"] = f"{state['error']['stage']}: {state['error']['reason']}"
    if state.get("callback"):
        cb = state["callback"]
        rows["callback"] = f"{cb['event']} {cb['outcome']} ({cb['attempts']} tries)"
    for name, value in rows.items():
        table.add_row(f"[bold]{name}[/]", value)
    console.print(table)


def edit_summary(edit: dict[str, int]) -> str:
    """What re-ingesting an edited document cost, in one line."""
    return (
        f"{edit['windows_unchanged']} windows unchanged, {edit['windows_changed']} changed; "
        f"{edit['chunks_reused']} chunks reused, {edit['objects_written']} written, "
        f"{edit['objects_removed']} removed"
    )
