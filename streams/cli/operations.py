"""Operations: running the apps, consumer lag (and its exporter), dead letters."""

from __future__ import annotations

import contextlib
from typing import Annotated

import orjson
import typer
from rich.table import Table

from streams.cli.root import app, clear_errors, console
from streams.errors import DocstreamsError
from streams.settings import Settings

dlq_app = typer.Typer(help="Dead letters: input a stage could not process.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")


@app.command("run")
@clear_errors
def run_command(
    stage: Annotated[str, typer.Argument(help="download|extract|chunk|embed|index|tracker|all")],
    replicas: Annotated[
        list[str] | None,
        typer.Option(
            help="With `all`: processes of an app, as APP=N (e.g. extract=2; tracker=2 serves "
            "its status API on TRACKER_PORT and the ports after it)."
        ),
    ] = None,
    autoscale: Annotated[
        bool,
        typer.Option(
            help="With `all`: each stage's processes follow its lag, by the rule and "
            "numbers of its KEDA ScaledObject (AUTOSCALE_* settings)."
        ),
    ] = False,
) -> None:
    """Run one app in this process, or every app as its own process (`all`)."""
    from streams.apps import STAGES, run_all, run_stage
    from streams.memory import tune_allocator
    from streams.pipeline import APPS

    settings = Settings()
    if stage == "all":
        raise typer.Exit(run_all(settings, list(APPS), _replicas(replicas or []), autoscale))
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
    from streams.pipeline import APPS

    counts = {}
    for option in options:
        name, _, count = option.partition("=")
        if name not in APPS or not count.isdigit() or int(count) < 1:
            raise DocstreamsError(f"--replicas {option!r}: expected APP=N with an app name "
                                  f"({', '.join(APPS)}) and N >= 1")  # fmt: skip
        counts[name] = int(count)
    return counts


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
