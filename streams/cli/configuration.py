"""What docstreams declares: its topics, its messages' JSON Schemas, its settings."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Column, Table

from streams.cli.root import app, clear_errors, console
from streams.kafka_clients import admin_client
from streams.pipeline import TOPICS
from streams.settings import Settings, settings_table
from streams.topics import create_topics, topic_name

topics_app = typer.Typer(
    help="docstreams topics, declared in streams/pipeline.py.", no_args_is_help=True
)
app.add_typer(topics_app, name="topics")
schemas_app = typer.Typer(
    help="JSON Schemas of the messages, generated from streams/messages.py.", no_args_is_help=True
)
app.add_typer(schemas_app, name="schemas")


def _topic_column(names: Iterable[str]) -> Column:
    """A topic's name is what an operator copies into other commands: never cut or wrapped, the
    other columns wrap instead (a narrow terminal, or none: CI's default width is 80)."""
    return Column("topic", no_wrap=True, min_width=max((len(n) for n in names), default=5))


@topics_app.command("create")
@clear_errors
def topics_create() -> None:
    """Create missing topics and restore drifted configs; safe to run any number of times."""
    settings = Settings()
    results = create_topics(admin_client(settings), settings)
    table = Table(_topic_column(r.name for r in results), "partitions", "action", "note")
    for r in results:
        table.add_row(r.name, str(r.partitions), r.action.value, r.note)
    console.print(table)


@topics_app.command("list")
def topics_list() -> None:
    """The declared topics and what they carry."""
    settings = Settings()
    table = Table(
        _topic_column(topic_name(settings, t.key) for t in TOPICS),
        "partitions",
        "retention",
        "max message",
        "cleanup",
        "purpose",
    )
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
        typer.echo("| section | variable | default | meaning |\n|---|---|---|---|")
        for section, var, default, doc in rows:
            shown = f"`{default}`" if default else ""
            typer.echo(f"| {section} | `{var}` | {shown} | {doc} |")
        return
    table = Table("section", "variable", "default", "meaning")
    for row in rows:
        table.add_row(*row)
    console.print(table)
