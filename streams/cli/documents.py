"""Documents: submit one, follow its status, delete it, search the index."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from streams.cli.root import app, clear_errors, console
from streams.errors import DocstreamsError
from streams.settings import Settings


@app.command("submit")
@clear_errors
def submit_command(
    source: Annotated[str, typer.Argument(help="URL, or a local path when local sources are on.")],
    tenant: Annotated[str, typer.Option("--tenant", "-t")],
    document_id: Annotated[str | None, typer.Option("--document-id", "-d")] = None,
    callback_url: Annotated[str | None, typer.Option("--callback-url")] = None,
    wait: Annotated[
        bool, typer.Option(help="Wait until the tracker says completed (or failed).")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 600.0,
) -> None:
    """Publish a DocumentSubmitted to the ingest topic."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from streams.producer import submit
    from streams.progress import follow
    from streams.status_client import edit_summary

    settings = Settings()
    if "://" not in source and Path(source).exists():
        source = str(Path(source).resolve())  # the download app may run elsewhere
    request = submit(settings, source, tenant, document_id, callback_url=callback_url)
    console.print(f"submitted {request.tenant_id}/{request.document_id}")
    if not wait:
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=console) as bar:  # fmt: skip
        task = bar.add_task("windows indexed", total=None)

        def show(p: Any) -> None:
            bar.update(task, total=p.window_count, completed=len(p.indexed))

        result = follow(
            settings, request.tenant_id, request.document_id, request.submitted_at, timeout, show
        )
    if result.failure is not None:
        f = result.failure
        raise DocstreamsError(f"{request.document_id} failed in {f.stage}: {f.reason}")
    if not result.done:
        raise DocstreamsError(f"{request.document_id} not completed within {timeout:.0f}s")
    done = result.completed
    how = f"{result.window_count} windows"
    if done and done.reused_unchanged:
        how = "unchanged content, nothing re-indexed"
    elif result.state.base_version:
        how = f"an edit ({edit_summary(result.state.edit())})"
    console.print(
        f"[green]✓[/] {request.document_id}: {how}, {result.chunks} chunks searchable "
        f"(version {str(result.version)[:12]}, {done.tokens_spent if done else 0} tokens)"
    )


@app.command("status")
@clear_errors
def status_command(
    document_id: Annotated[str, typer.Argument()],
    tenant: Annotated[str, typer.Option("--tenant", "-t")],
    json: Annotated[bool, typer.Option("--json")] = False,
    watch: Annotated[bool, typer.Option(help="Follow with a progress bar until done.")] = False,
) -> None:
    """A document's state from the tracker's status API."""
    from streams.status_client import document_status, print_status, watch_status

    settings = Settings()
    if watch and not json:
        state = watch_status(settings, tenant, document_id, console)
    else:
        state = document_status(settings, tenant, document_id)
    if json:
        typer.echo(orjson.dumps(state).decode())
    else:
        print_status(state, console)


@app.command("delete")
@clear_errors
def delete_command(
    document_id: Annotated[str, typer.Argument()],
    tenant: Annotated[str, typer.Option("--tenant", "-t")],
) -> None:
    """Remove a document (every version) from the index: a delete request on the ingest topic."""
    from streams.producer import request_delete

    request = request_delete(Settings(), tenant, document_id)
    console.print(f"delete requested for {request.tenant_id}/{request.document_id}")


class SearchModeChoice(StrEnum):
    hybrid = "hybrid"
    vector = "vector"
    keyword = "keyword"


@app.command("search")
@clear_errors
def search_command(
    query: Annotated[str, typer.Argument()],
    tenant: Annotated[str, typer.Option("--tenant", "-t")],
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=100)] = 5,
    mode: Annotated[
        SearchModeChoice | None,
        typer.Option(
            "--mode",
            help="hybrid: words and meaning; vector: meaning only; keyword: exact words only "
            "(default: SEARCH_MODE, hybrid).",
        ),
    ] = None,
    alpha: Annotated[
        float | None,
        typer.Option(
            "--alpha", min=0.0, max=1.0, help="Hybrid's vector weight (default: SEARCH_ALPHA)."
        ),
    ] = None,
    json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Search a tenant's current documents; keyword mode needs no embedding model."""
    from streams.adapters.weaviate_store import ChunkIndex

    settings = Settings()
    chosen = mode.value if mode else settings.search_mode
    vector = None
    if chosen != "keyword":
        from streams.adapters.embedders import make_embedder

        vector = make_embedder(settings).embed([query])[0].tolist()
    index = ChunkIndex(settings)
    try:
        hits = index.search(
            tenant,
            vector,
            limit,
            text=query,
            mode=chosen,
            alpha=settings.search_alpha if alpha is None else alpha,
        )
    finally:
        index.close()
    if json:
        typer.echo(orjson.dumps([h.__dict__ for h in hits]).decode())
        return
    table = Table("score", "document", "pages / time", "text", title=f"{chosen} search")
    for h in hits:
        score = "" if h.score is None else f"{h.score:.3f}"
        if h.start_s is not None and h.end_s is not None:  # a recording: its time range
            pages = f"{_clock(h.start_s)}\N{EN DASH}{_clock(h.end_s)}"
        elif h.page_start == h.page_end:
            pages = f"{h.page_start}"
        else:
            pages = f"{h.page_start}-{h.page_end}"
        text = " ".join(h.text.split())
        table.add_row(score, h.document_id, pages, text[:600] + ("…" if len(text) > 600 else ""))
    console.print(table)


def _clock(seconds: float) -> str:
    """mm:ss (h:mm:ss from an hour on)."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes = f"{rest // 60:02d}:{rest % 60:02d}"
    return f"{hours}:{minutes}" if hours else minutes
