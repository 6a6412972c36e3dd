"""The `openai` embedder, driven through the real openai client against a local server."""

from __future__ import annotations

import numpy as np
import pytest

from streams.adapters import embedders
from streams.adapters.embedders import OpenAIEmbedder
from streams.errors import DownstreamUnavailable
from streams.settings import Settings
from tests.openai_server import EmbeddingsApi, serving


def _embedder(base_url: str) -> OpenAIEmbedder:
    settings = Settings(embedder="openai", openai_base_url=base_url, openai_api_key="sk-test",  # type: ignore[arg-type]
                        openai_model="text-embedding-3-small", openai_dimensions=384)  # fmt: skip
    return OpenAIEmbedder(settings)


def test_openai_embedder_returns_the_servers_vectors_in_input_order() -> None:
    api = EmbeddingsApi()
    texts = ["lanterns on the pier", "grain at berth five", "fog and the bell buoy"]
    with serving(api) as url:
        vectors = _embedder(url).embed(texts)
    np.testing.assert_allclose(vectors, api.model.embed(texts), atol=1e-6)
    assert api.requests == [texts]


def test_requests_are_split_to_respect_the_providers_limits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(embedders, "MAX_REQUEST_INPUTS", 3)
    api = EmbeddingsApi()
    texts = [f"note {i} about the harbour" for i in range(7)]
    with serving(api) as url:
        vectors = _embedder(url).embed(texts)
    assert [len(r) for r in api.requests] == [3, 3, 1]
    assert vectors.shape == (7, 384)


def test_429_is_retried_honouring_retry_after_then_succeeds() -> None:
    api = EmbeddingsApi(fail_next=[(429, {"retry-after-ms": "50"}), (503, {"retry-after": "0"})])
    with serving(api) as url:
        vectors = _embedder(url).embed(["one text"])
    assert vectors.shape == (1, 384) and api.fail_next == []


def test_a_provider_that_stays_throttled_is_back_pressure_not_poison() -> None:
    api = EmbeddingsApi(fail_next=[(429, {"retry-after-ms": "10"})] * 10)
    with serving(api) as url, pytest.raises(DownstreamUnavailable, match="rate limit"):
        _embedder(url).embed(["one text"])
