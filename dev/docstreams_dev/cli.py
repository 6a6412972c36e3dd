"""docstreams-dev's commands: `docstreams stack ...` and `docstreams chaos`.

`register` is the ``docstreams.cli`` entry point (dev/pyproject.toml): the product's CLI calls
it at start when docstreams-dev is installed. The stack and the chaos harness are imported by
the commands that use them only, so every other command starts without them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import orjson
import typer
from rich.table import Table

from streams.cli.root import clear_errors, console
from streams.settings import Settings

if TYPE_CHECKING:
    from docstreams_dev.stack import Stack

stack_app = typer.Typer(
    help="The local Kafka + Weaviate stack (127.0.0.1, no Docker).", no_args_is_help=True
)

# `stack status` exits with this when a service is not healthy (as `systemctl status` does).
EXIT_NOT_HEALTHY = 3


def register(app: typer.Typer) -> None:
    app.add_typer(stack_app, name="stack")
    app.command("chaos")(chaos_command)


def _stack() -> Stack:
    from docstreams_dev.stack import Stack

    return Stack(Settings())


@stack_app.command("install")
@clear_errors
def stack_install() -> None:
    """Fetch Kafka's jars (Maven) and build Weaviate (Go) into the cache dir."""
    stack = _stack()
    with console.status("installing (first time: a few minutes for the Weaviate build)"):
        stack.install()
    for s in stack.services:
        console.print(f"{s.name} {s.version}: installed in {s.settings.cache_dir}")


@stack_app.command("up")
@clear_errors
def stack_up() -> None:
    """Start Kafka and Weaviate (installing them first if needed); waits until healthy."""
    stack = _stack()
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
    for name, was_running in _stack().down(purge=purge).items():
        console.print(f"{name}: {'stopped' if was_running else 'was not running'}")
    if purge:
        console.print("data and logs deleted")


@stack_app.command("status")
@clear_errors
def stack_status(json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Each service's pid, ports, memory and health. Exits 3 unless all are healthy."""
    statuses = _stack().status()
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
    from docstreams_dev.stack.check import check_kafka_transactions, check_weaviate_vectors

    results = [check_kafka_transactions(settings), check_weaviate_vectors(settings)]
    for r in results:
        mark = "[green]✓[/]" if r.ok else "[red]✗[/]"
        console.print(f"{mark} {r.service}: {r.detail} ({r.seconds:.2f}s)")
    if not all(r.ok for r in results):
        raise typer.Exit(1)


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
    edit_kills: Annotated[
        int, typer.Option(help="Kills while edited versions of the documents are re-submitted.")
    ] = 10,
    edit_round: Annotated[
        bool, typer.Option(help="Re-submit edited versions after the first round.")
    ] = True,
    scale: Annotated[
        bool, typer.Option(help="Also scale stages out (2-4 processes) and in at random moments.")
    ] = False,
    scale_events: Annotated[int, typer.Option(help="Scale events per round, with --scale.")] = 16,
    small_documents: Annotated[
        int, typer.Option(help="More documents: Markdown and HTML, a few windows each.")
    ] = 0,
    recording_s: Annotated[
        float, typer.Option(help="Also a recording of this many seconds (0: none).")
    ] = 0.0,
    replicas: Annotated[int, typer.Option(help="Processes of every stage (kills hit any).")] = 1,
    tracker_replicas: Annotated[int, typer.Option(help="Processes of the tracker.")] = 1,
    kill_gap_max_s: Annotated[float, typer.Option(help="Longest gap between two kills.")] = 4.0,
) -> None:
    """Ingest a document set cleanly, then again under kills, a broker restart and a Weaviate
    outage, on a private stack; then edited versions of the documents, again cleanly and under
    kills; compare the two indexes. Last line: a JSON summary."""
    from docstreams_dev.chaos import ChaosPlan, passed, run
    from streams.pipeline import APPS

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    plan = ChaosPlan(kills=kills, broker_restarts=broker_restarts,
                     weaviate_outage_s=weaviate_outage_s, seed=seed, pages=pages,
                     timeout_s=timeout, workdir=workdir, keep_stack=keep_stack,
                     edit_round=edit_round, edit_kills=edit_kills,
                     scale_events=scale_events if scale else 0,
                     small_documents=small_documents, recording_s=recording_s,
                     replicas=replicas, tracker_replicas=tracker_replicas,
                     kill_gap_s=(0.5, kill_gap_max_s),
                     victims=("tracker",) if tracker_kills_only else tuple(APPS))  # fmt: skip
    summary = run(plan)
    typer.echo(orjson.dumps(summary).decode())
    raise typer.Exit(0 if passed(summary) else 1)
