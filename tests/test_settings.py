"""Settings come from DOCSTREAMS_ variables, and every one of them is documented."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from streams.cli import app
from streams.settings import Settings, as_environment, settings_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_environment_variables_override_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCSTREAMS_KAFKA_PORT", "40001")
    monkeypatch.setenv("DOCSTREAMS_WEAVIATE_API_KEY", "s3cret")
    settings = Settings()
    assert settings.kafka_port == 40001
    assert settings.bootstrap_servers == "127.0.0.1:40001"
    assert settings.weaviate_api_key is not None
    assert "s3cret" not in repr(settings)  # secrets never print


def test_explicit_bootstrap_servers_win_over_the_local_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCSTREAMS_KAFKA_BOOTSTRAP_SERVERS", "kafka-0:9092,kafka-1:9092")
    assert Settings().bootstrap_servers == "kafka-0:9092,kafka-1:9092"


def test_invalid_values_are_rejected_with_the_setting_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCSTREAMS_KAFKA_PORT", "70000")
    with pytest.raises(ValidationError, match="kafka_port"):
        Settings()


def test_readme_settings_table_is_the_generated_one() -> None:
    readme = README.read_text()
    block = readme.split("<!-- settings:begin", 1)[1].split("<!-- settings:end -->", 1)[0]
    documented = block.split("\n", 1)[1].strip()
    generated = CliRunner().invoke(app, ["settings", "--markdown"]).stdout.strip()
    assert documented == generated, "README is stale: run scripts/sync-docs"
    assert all(f"`{var}`" in documented for _, var, _, _ in settings_table())


def test_settings_command_prints_a_markdown_row_per_setting() -> None:
    result = CliRunner().invoke(app, ["settings", "--markdown"])
    assert result.exit_code == 0
    rows = [line for line in result.stdout.splitlines() if "| `DOCSTREAMS_" in line]
    assert len(rows) == len(Settings.model_fields)


def test_as_environment_reproduces_settings_including_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = Settings(
        kafka_port=40123,
        topic_prefix="x.",
        weaviate_api_key="k-123",  # type: ignore[arg-type]
        fetch_allowlist=["127.0.0.1/32", "10.0.0.0/8"],
        local_source_roots=[Path("/srv/docs")],
    )
    for var, value in as_environment(original).items():
        monkeypatch.setenv(var, value)
    assert Settings() == original


def test_the_retired_local_sources_switch_stops_start_up_naming_its_replacement(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCSTREAMS_ALLOW_LOCAL_SOURCES", "true")
    with pytest.raises(ValueError, match="replaced by DOCSTREAMS_LOCAL_SOURCE_ROOTS"):
        Settings()
