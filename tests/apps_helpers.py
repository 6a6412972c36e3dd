"""Running `docstreams run all` (every stage and the tracker, each its own process) in tests."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from docstreams_dev.apps import app_process as app_process
from docstreams_dev.apps import running_apps as running_apps
from docstreams_dev.stack.ports import free_port_block as free_port_block
from streams.settings import Settings


def isolated(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory, name: str, **changes: Any
) -> Settings:
    """The session stack's settings with topics, a Weaviate collection and a blob store of a
    test module's own (local sources allowed), plus ``changes``."""
    run = uuid.uuid4().hex[:8]
    return stack_settings.model_copy(
        update={
            "topic_prefix": f"{name}{run}.",
            "weaviate_collection": f"{name.capitalize()}{run}",
            "blob_dir": tmp_path_factory.mktemp("blobs"),
            "allow_local_sources": True,
            **changes,
        }
    )
