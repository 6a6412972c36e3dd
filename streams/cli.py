"""The `docstreams` command line."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import orjson
import typer
from rich.console import Console
from rich.table import Table

from streams.errors import DocstreamsError
from streams.kafka_clients import admin_client
from streams.pipeline import TOPICS
from streams.settings import Settings, settings_table
from streams.stack import Stack
from streams.topics import create_topics, topic_name

app = typer.Typer(
    help="docstreams: documents to searchable chunks, through Kafka, into Weaviate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
stack_app = typer.Typer(
    help="The local Kafka + Weaviate stack (127.0.0.1, no Docker).", no_args_is_help=True
)
topics_app = typer.Typer(
    help="docstreams topics, declared in streams/topics.py.", no_args_is_help=True
)
app.add_typer(stack_app, name="stack")
app.add_typer(topics_app, name="topics")
schemas_app = typer.Typer(
    help="JSON Schemas of the messages, generated from streams/messages.py.", no_args_is_help=True
)
app.add_typer(schemas_app, name="schemas")
dlq_app = typer.Typer(help="Dead letters: input a stage could not process.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")

console = Console()
err_console = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")

# `stack status` exits with this when a service is not healthy (as `systemctl status` does).
EXIT_NOT_HEALTHY = 3


def clear_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Our own errors end the command with one red line, not a traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except DocstreamsError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else Settings().log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


# --- stack ---------------------------------------------------------------------------------
@stack_app.command("install")
@clear_errors
def stack_install() -> None:
    """Fetch Kafka's jars (Maven) and build Weaviate (Go) into the cache dir."""
    stack = Stack(Settings())
    with console.status("installing (first time: a few minutes for the Weaviate build)"):
        stack.install()
    for s in stack.services:
        console.print(f"{s.name} {s.version}: installed in {s.settings.cache_dir}")


@stack_app.command("up")
@clear_errors
def stack_up() -> None:
    """Start Kafka and Weaviate (installing them first if needed); waits until healthy."""
    stack = Stack(Settings())
    with console.status("starting Kafka and Weaviate"):
        reports = stack.up()
    for r in reports:
        verb = "started" if r.started else "already running"
        console.print(f"[green]✓[/] {r.service} {verb}, healthy after {r.seconds:.1f}s")


@stack_app.command("down")
@clear_errors
def stack_down(
    purge: Annotated[bool, typer.Option(help="Also delete the stack's data and logs.")] = False,
) -> None:
    """Stop Kafka and Weaviate cleanly (SIGTERM, then SIGKILL after a timeout)."""
    for name, was_running in Stack(Settings()).down(purge=purge).items():
        console.print(f"{name}: {'stopped' if was_running else 'was not running'}")
    if purge:
        console.print("data and logs deleted")


@stack_app.command("status")
@clear_errors
def stack_status(json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Each service's pid, ports, memory and health. Exits 3 unless all are healthy."""
    statuses = Stack(Settings()).status()
    if json:
        typer.echo(orjson.dumps([s.to_dict() for s in statuses]).decode())
    else:
        table = Table("service", "version", "state", "pid", "RSS MB", "ports")
        for s in statuses:
            state = (
                "[green]healthy"
                if s.healthy
                else ("[yellow]starting" if s.running else "[red]stopped")
            )
            ports = ", ".join(f"{k} {v}" for k, v in s.ports.items())
            table.add_row(s.name, s.version, state, str(s.pid or "-"), str(s.rss_mb or "-"), ports)
        console.print(table)
    if not all(s.healthy for s in statuses):
        raise typer.Exit(EXIT_NOT_HEALTHY)


@stack_app.command("check")
@clear_errors
def stack_check() -> None:
    """Round-trip a Kafka transaction and a Weaviate vector query on the running stack."""
    settings = Settings()
    from streams.stack.check import check_kafka_transactions, check_weaviate_vectors

    results = [check_kafka_transactions(settings), check_weaviate_vectors(settings)]
    for r in results:
        mark = "[green]✓[/]" if r.ok else "[red]✗[/]"
        console.print(f"{mark} {r.service}: {r.detail} ({r.seconds:.2f}s)")
    if not all(r.ok for r in results):
        raise typer.Exit(1)


# --- topics --------------------------------------------------------------------------------
@topics_app.command("create")
@clear_errors
def topics_create() -> None:
    """Create missing topics and restore drifted configs; safe to run any number of times."""
    settings = Settings()
    results = create_topics(admin_client(settings), settings)
    table = Table("topic", "partitions", "action", "note")
    for r in results:
        table.add_row(r.name, str(r.partitions), r.action.value, r.note)
    console.print(table)


@topics_app.command("list")
def topics_list() -> None:
    """The declared topics and what they carry."""
    settings = Settings()
    table = Table("topic", "partitions", "retention", "max message", "cleanup", "purpose")
    for t in TOPICS:
        retention = "forever" if t.retention_ms < 0 else f"{t.retention_ms / 86_400_000:g} d"
        table.add_row(
            topic_name(settings, t.key),
            str(t.partitions),
            retention,
            f"{t.max_message_bytes / 2**20:g} MiB",
            t.cleanup_policy,
            t.purpose,
        )
    console.print(table)


# --- the pipeline --------------------------------------------------------------------------
@app.command("run")
@clear_errors
def run_command(
    stage: Annotated[str, typer.Argument(help="download|extract|chunk|embed|index|tracker|all")],
    replicas: Annotated[
        list[str] | None,
        typer.Option(help="With `all`: processes of a stage, as STAGE=N (e.g. extract=2)."),
    ] = None,
) -> None:
    """Run one app in this process, or every app as its own process (`all`)."""
    from streams.apps import STAGES, run_all, run_stage
    from streams.memory import tune_allocator
    from streams.pipeline import APPS

    settings = Settings()
    if stage == "all":
        raise typer.Exit(run_all(settings, list(APPS), _replicas(replicas or [])))
    tune_allocator()
    if stage == "tracker":
        # Imported here only: faust, aiokafka and the Weaviate client (~60 MB) are the
        # tracker's; a stage process that imported them would carry them all its life.
        from streams.tracker import run_tracker

        run_tracker(settings)
        return
    if stage not in STAGES:
        raise DocstreamsError(f"unknown app {stage!r}: one of {', '.join(APPS)} or all")
    run_stage(stage, settings)


def _replicas(options: list[str]) -> dict[str, int]:
    from streams.apps import STAGES

    counts = {}
    for option in options:
        name, _, count = option.partition("=")
        if name not in STAGES or not count.isdigit() or int(count) < 1:
            raise DocstreamsError(f"--replicas {option!r}: expected STAGE=N with a stage name "
                                  f"({', '.join(STAGES)}) and N >= 1")  # fmt: skip
        counts[name] = int(count)
    return counts


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
    how = (
        "unchanged content, nothing re-indexed"
        if done and done.reused_unchanged
        else (f"{result.window_count} windows")
    )
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


@app.command("search")
@clear_errors
def search_command(
    query: Annotated[str, typer.Argument()],
    tenant: Annotated[str, typer.Option("--tenant", "-t")],
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=100)] = 5,
    json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Embed the query with the configured embedder and print the nearest chunks."""
    from streams.adapters.embedders import make_embedder
    from streams.adapters.weaviate_store import ChunkIndex

    settings = Settings()
    vector = make_embedder(settings).embed([query])[0].tolist()
    index = ChunkIndex(settings)
    try:
        hits = index.search(tenant, vector, limit)
    finally:
        index.close()
    if json:
        typer.echo(orjson.dumps([h.__dict__ for h in hits]).decode())
        return
    table = Table("score", "document", "pages / time", "text")
    for h in hits:
        score = "" if h.distance is None else f"{1 - h.distance:.3f}"
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


# --- operations ----------------------------------------------------------------------------
@app.command("chaos")
def chaos_command(
    kills: Annotated[int, typer.Option(help="SIGKILLs of random apps, at random moments.")] = 30,
    broker_restarts: Annotated[int, typer.Option(help="Kafka broker restarts.")] = 1,
    weaviate_outage_s: Annotated[float, typer.Option(help="Seconds Weaviate is down.")] = 20.0,
    seed: Annotated[int, typer.Option(help="Seed of the schedule (replay a failure).")] = 1,
    pages: Annotated[int, typer.Option(help="Pages of the assembled PDF.")] = 2000,
    timeout: Annotated[float, typer.Option(help="Seconds each run may take.")] = 1800.0,
    workdir: Annotated[Path | None, typer.Option(help="Keep data and logs here.")] = None,
    keep_stack: Annotated[bool, typer.Option(help="Leave the private stack running.")] = False,
    tracker_kills_only: Annotated[
        bool, typer.Option(help="Aim every kill at the tracker (none at the stages).")
    ] = False,
) -> None:
    """Ingest a document set cleanly, then again under kills, a broker restart and a Weaviate
    outage, on a private stack; compare the two indexes. Last line: a JSON summary."""
    from streams.chaos import ChaosPlan, passed, run
    from streams.pipeline import APPS

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    plan = ChaosPlan(kills=kills, broker_restarts=broker_restarts,
                     weaviate_outage_s=weaviate_outage_s, seed=seed, pages=pages,
                     timeout_s=timeout, workdir=workdir, keep_stack=keep_stack,
                     victims=("tracker",) if tracker_kills_only else tuple(APPS))  # fmt: skip
    summary = run(plan)
    typer.echo(orjson.dumps(summary).decode())
    raise typer.Exit(0 if passed(summary) else 1)


@app.command("lag")
@clear_errors
def lag_command(
    json: Annotated[bool, typer.Option("--json")] = False,
    watch: Annotated[float, typer.Option(help="Repeat every N seconds (0: once).")] = 0.0,
) -> None:
    """Consumer lag of each stage: per partition with --json, totals per stage otherwise."""
    import time

    from streams.lag import stage_lags

    settings = Settings()
    while True:
        rows = stage_lags(settings)
        if json:
            typer.echo(orjson.dumps([r.to_dict() for r in rows]).decode())
        else:
            table = Table("stage", "group", "topic", "lag", "partitions behind")
            for stage in dict.fromkeys(r.stage for r in rows):
                mine = [r for r in rows if r.stage == stage]
                behind = [str(r.partition) for r in mine if r.lag]
                table.add_row(stage, mine[0].group, mine[0].topic,
                              str(sum(r.lag for r in mine)), ",".join(behind) or "-")  # fmt: skip
            console.print(table)
        if not watch:
            return
        time.sleep(watch)


@app.command("lag-exporter")
@clear_errors
def lag_exporter_command(
    port: Annotated[int, typer.Option(help="Port of /metrics.")] = 9308,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
) -> None:
    """Serve kafka_exporter-compatible lag series of every stage at /metrics (for KEDA too)."""
    import signal
    import threading

    from prometheus_client import CollectorRegistry, start_http_server

    from streams.lag import LagCollector

    registry = CollectorRegistry()
    registry.register(LagCollector(Settings()))
    server, _ = start_http_server(port, addr=host, registry=registry)
    console.print(f"lag exporter on http://{host}:{port}/metrics")
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with contextlib.suppress(KeyboardInterrupt):
        stopped.wait()
    server.shutdown()


# --- dead letters --------------------------------------------------------------------------
@dlq_app.command("list")
@clear_errors
def dlq_list(json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every dead letter: its id, stage, document and reason."""
    from streams.dlq import list_dead_letters

    entries = list_dead_letters(Settings())
    if json:
        rows = [{"id": e.id, **e.letter.model_dump(mode="json")} for e in entries]
        typer.echo(orjson.dumps(rows).decode())
        return
    table = Table("id", "stage", "tenant/document", "reason", "attempts", "failed at")
    for e in entries:
        d = e.letter
        table.add_row(e.id, d.stage, f"{d.tenant_id}/{d.document_id}", d.reason[:120],
                      str(d.attempts), d.failed_at.isoformat(timespec="seconds"))  # fmt: skip
    console.print(table)


@dlq_app.command("replay")
@clear_errors
def dlq_replay(
    ids: Annotated[list[str] | None, typer.Argument(help="Ids from `dlq list`.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Replay every dead letter.")] = False,
) -> None:
    """Re-publish dead letters to the topic they came from (after fixing the cause)."""
    from streams.dlq import list_dead_letters, replay

    if not ids and not all_:
        raise DocstreamsError("name dead letter ids (see `docstreams dlq list`) or pass --all")
    settings = Settings()
    entries = list_dead_letters(settings)
    if not all_:
        known = {e.id for e in entries}
        unknown = [i for i in ids or [] if i not in known]
        if unknown:
            raise DocstreamsError(f"no dead letter with id {', '.join(unknown)}")
        entries = [e for e in entries if e.id in set(ids or [])]
    console.print(f"replayed {replay(settings, entries)} record(s)")


# --- schemas -------------------------------------------------------------------------------
@schemas_app.command("export")
def schemas_export(
    directory: Annotated[Path, typer.Argument(help="Where to write them.")] = Path("schemas"),
) -> None:
    """Write one JSON Schema file per message type."""
    from streams.schemas import export_schemas

    for path in export_schemas(directory):
        console.print(f"wrote {path}")


# --- settings ------------------------------------------------------------------------------
@app.command("settings")
def settings_command(
    markdown: Annotated[bool, typer.Option(help="Print the README's markdown table.")] = False,
) -> None:
    """Every setting: its environment variable, default and meaning."""
    rows = settings_table()
    if markdown:
        typer.echo("| variable | default | meaning |\n|---|---|---|")
        for var, default, doc in rows:
            typer.echo(
                f"| `{var}` | `{default}` | {doc} |" if default else f"| `{var}` | | {doc} |"
            )
        return
    table = Table("variable", "default", "meaning")
    for row in rows:
        table.add_row(*row)
    console.print(table)
