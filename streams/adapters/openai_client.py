"""The OpenAI SDK, imported and configured one way for every adapter that calls the API."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from streams.settings import EmbedSettings


def openai_sdk() -> ModuleType:
    """``import openai``, without aiohttp: the SDK imports it when it is installed
    (faust-streaming brings it) for an async transport docstreams never uses, 8 MB in every
    process that calls the API."""
    with _unimportable("aiohttp"):
        import openai
    return openai


def openai_client(settings: EmbedSettings) -> Any:
    key = settings.openai_api_key
    return openai_sdk().OpenAI(
        api_key=key.get_secret_value() if key else "unset",
        base_url=settings.openai_base_url,
        max_retries=0,  # retries are decided by the caller: the SDK would retry a dead quota too
        timeout=settings.openai_timeout_s,
    )


@contextmanager
def _unimportable(name: str) -> Iterator[None]:
    """``import name`` fails inside (unless it is imported already)."""
    if name in sys.modules:
        yield
        return
    sys.modules[name] = None  # type: ignore[assignment]  # documented: the import then raises
    try:
        yield
    finally:
        if name in sys.modules and sys.modules[name] is None:
            del sys.modules[name]
