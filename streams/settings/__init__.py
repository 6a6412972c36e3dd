"""Every setting docstreams reads, in sections, combined in one ``Settings``.

All values come from environment variables prefixed ``DOCSTREAMS_`` (or a ``.env`` file in the
working directory). The README's settings table is generated from the sections and checked by a
test, so a setting cannot exist without being documented.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import orjson
from pydantic import SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)

from streams.settings.platform import (
    DEFAULT_CACHE_DIR,
    DEFAULT_KAFKA_PORT,
    DEFAULT_KAFKA_VERSION,
    DEFAULT_WEAVIATE_VERSION,
    GeneralSettings,
    IndexSettings,
    KafkaSettings,
    LocalStackSettings,
    Section,
    TrackerSettings,
)
from streams.settings.stages import EmbedSettings, FetchSettings, ParseSettings, RunnerSettings

ENV_PREFIX = "DOCSTREAMS_"


class Settings(
    BaseSettings,
    GeneralSettings,
    KafkaSettings,
    RunnerSettings,
    FetchSettings,
    ParseSettings,
    EmbedSettings,
    IndexSettings,
    TrackerSettings,
    LocalStackSettings,
):
    """docstreams configuration: every section in one object, read from the environment once.

    An app builds each component from the section it needs; a component's signature names its
    section (``ChunkIndex(settings: IndexSettings)``), so what it may read is visible and
    checked. The variable names are the fields' (``DOCSTREAMS_`` + field name)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Secret files (a mounted Kubernetes Secret) come last: env and .env override them.
        secrets_dir = os.environ.get(f"{ENV_PREFIX}SECRETS_DIR")
        files = (
            SecretsSettingsSource(settings_cls, secrets_dir=secrets_dir)
            if secrets_dir
            else file_secret_settings
        )
        return init_settings, env_settings, dotenv_settings, files

    @model_validator(mode="after")
    def _no_retired_switch(self) -> Settings:
        # The old on/off switch let a request read any file the process could: refuse to
        # start with it rather than silently ignore it (or silently keep local sources off).
        if f"{ENV_PREFIX}ALLOW_LOCAL_SOURCES" in os.environ:
            raise ValueError(
                f"{ENV_PREFIX}ALLOW_LOCAL_SOURCES was replaced by {ENV_PREFIX}LOCAL_SOURCE_ROOTS: "
                'the folders local sources may come from (JSON list, e.g. ["./samples"])'
            )
        return self


# In the order Settings names them: the README's table follows it.
SECTIONS: tuple[type[Section], ...] = tuple(
    base for base in Settings.__bases__ if issubclass(base, Section)
)


def env_name(field: str) -> str:
    """The environment variable that sets ``field``."""
    return f"{ENV_PREFIX}{field.upper()}"


def as_environment(settings: Settings) -> dict[str, str]:
    """The environment variables that reproduce ``settings`` in a child process."""
    env = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, list | dict):
            # Complex values are read as JSON.
            env[env_name(name)] = orjson.dumps(value, default=_reveal).decode()
        elif value is not None:
            env[env_name(name)] = str(value)
    return env


def _reveal(value: object) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def section_title(section: type[Section]) -> str:
    """``LocalStackSettings`` -> ``local stack``."""
    words = re.findall(r"[A-Z][a-z]*", section.__name__.removesuffix("Settings"))
    return " ".join(words).lower()


def settings_table() -> list[tuple[str, str, str, str]]:
    """(section, variable, default, description) for every setting, section by section."""
    rows = []
    for section in SECTIONS:
        for name, info in section.model_fields.items():
            default = info.get_default(call_default_factory=True)
            if isinstance(default, Path) and default.is_relative_to(Path.home()):
                shown = "~/" + str(default.relative_to(Path.home()))
            elif isinstance(default, list | dict):
                shown = orjson.dumps(default, default=_reveal).decode()
            else:
                shown = "" if default is None else str(default)
            rows.append((section_title(section), env_name(name), shown, info.description or ""))
    return rows


__all__ = [
    "DEFAULT_CACHE_DIR",
    "DEFAULT_KAFKA_PORT",
    "DEFAULT_KAFKA_VERSION",
    "DEFAULT_WEAVIATE_VERSION",
    "SECTIONS",
    "EmbedSettings",
    "FetchSettings",
    "GeneralSettings",
    "IndexSettings",
    "KafkaSettings",
    "LocalStackSettings",
    "ParseSettings",
    "RunnerSettings",
    "Settings",
    "TrackerSettings",
    "as_environment",
    "env_name",
    "settings_table",
]
