"""The `openai` embedder, driven through the real openai client against the local test server:
request shaping, pacing from the rate-limit headers, Retry-After, refusals that must not be
retried, a hung provider. And the local model: its derived (dynamically quantized) file."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from docstreams_dev.servers.openai_server import EmbeddingsApi, Fault, serving
from streams.adapters.embedders import LocalMiniLM, OpenAIEmbedder
from streams.adapters.pacing import Bucket, RateLimiter, parse_duration, retry_after_s
from streams.errors import DownstreamUnavailable, PoisonInput, ProviderRefused
from streams.settings import Settings


def _embedder(base_url: str, **overrides: Any) -> OpenAIEmbedder:
    settings = Settings(embedder="openai", openai_base_url=base_url, openai_api_key="sk-test",  # type: ignore[arg-type]
                        openai_model="text-embedding-3-small", openai_dimensions=384,
                        **overrides)  # fmt: skip
    return OpenAIEmbedder(settings)


# --- pacing, without a server ----------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("6m0s", 360.0), ("1s", 1.0), ("20ms", 0.02), ("0.5s", 0.5), ("1h2m3s", 3723.0),
     ("7", 7.0), ("", None), ("soon", None), ("5x", None)],
)  # fmt: skip
def test_reset_durations_are_read_as_openai_writes_them(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


def test_retry_after_ms_is_preferred_to_retry_after() -> None:
    assert retry_after_s({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_s({"retry-after": "3"}) == 3.0
    assert retry_after_s({}) is None


def test_a_bucket_refills_evenly_over_a_minute() -> None:
    clock = FakeClock()
    bucket = Bucket(600, clock)  # 10 per second
    bucket.take(600)
    assert bucket.wait_s(100) == pytest.approx(10.0)
    clock.now += 4
    assert bucket.wait_s(100) == pytest.approx(6.0)
    assert bucket.wait_s(10_000) == pytest.approx(56.0)  # more than capacity: a full bucket


def test_the_providers_headers_override_the_configured_limits() -> None:
    clock = FakeClock()
    limiter = RateLimiter(requests_per_minute=None, tokens_per_minute=1_000_000, clock=clock)
    assert limiter.wait_s(5_000) == 0.0
    limiter.observe({"x-ratelimit-limit-tokens": "10000", "x-ratelimit-remaining-tokens": "0",
                     "x-ratelimit-reset-tokens": "3s", "x-ratelimit-limit-requests": "60",
                     "x-ratelimit-remaining-requests": "59"})  # fmt: skip
    assert limiter.tokens.capacity == 10_000 and limiter.requests.capacity == 60
    assert limiter.wait_s(5_000) == pytest.approx(3.0)  # the reset comes before the refill
    clock.now += 3
    assert limiter.wait_s(5_000) == 0.0


# --- against the local OpenAI-compatible server -----------------------------------------------
@pytest.mark.parametrize("floats_only", [False, True], ids=["base64", "server-sends-floats"])
def test_openai_embedder_returns_the_servers_vectors_in_input_order(floats_only: bool) -> None:
    api = EmbeddingsApi(floats_only=floats_only)
    texts = ["lanterns on the pier", "grain at berth five", "fog and the bell buoy"]
    with serving(api) as url:
        vectors = _embedder(url).embed(texts)
    np.testing.assert_allclose(vectors, api.model.embed(texts), atol=1e-6)
    assert api.requests == [texts]


def test_request_bounds_respect_inputs_and_tokens_per_request() -> None:
    embedder = _embedder("http://127.0.0.1:9/v1", embed_max_inputs_per_request=3,
                         embed_max_tokens_per_request=100)  # fmt: skip
    assert embedder.request_bounds([10] * 7) == [(0, 3), (3, 6), (6, 7)]
    assert embedder.request_bounds([60, 30, 20, 90, 100]) == [(0, 2), (2, 3), (3, 4), (4, 5)]


def test_the_server_refuses_a_request_over_its_limits_as_openai_would() -> None:
    api = EmbeddingsApi(max_inputs=2)
    with serving(api) as url, pytest.raises(PoisonInput, match="more than 2"):
        # Sent as one request on purpose: the embedder's limits are set above the server's.
        _embedder(url).embed(["one", "two", "three"])
    assert [e.status for e in api.log] == [400]


def test_an_input_over_the_token_limit_is_refused_before_any_request() -> None:
    api = EmbeddingsApi()
    with serving(api) as url, pytest.raises(PoisonInput, match="input limit"):
        _embedder(url, embed_max_tokens_per_input=5).embed(["a much longer text than five tokens"])
    assert api.log == []


def test_a_short_retry_after_is_waited_in_place_then_succeeds() -> None:
    api = EmbeddingsApi(fail_next=[Fault(429, {"retry-after-ms": "300"}),
                                   Fault(503, {"retry-after": "0"})])  # fmt: skip
    with serving(api) as url:
        vectors = _embedder(url).embed(["one text"])
    assert np.asarray(vectors).shape == (1, 384)
    first, second, third = api.log
    assert (first.status, second.status, third.status) == (429, 503, 200)
    assert second.at - first.at >= 0.3  # Retry-After honoured


def test_a_long_retry_after_becomes_a_pause_of_that_length() -> None:
    api = EmbeddingsApi(fail_next=[Fault(429, {"retry-after": "7"})])
    with serving(api) as url, pytest.raises(DownstreamUnavailable) as caught:
        _embedder(url).embed(["one text"])
    assert caught.value.retry_after_s == 7.0
    assert len(api.log) == 1  # no request while it should wait


def test_insufficient_quota_is_not_retried() -> None:
    api = EmbeddingsApi(quota_exhausted=True)
    with serving(api) as url, pytest.raises(ProviderRefused) as caught:
        _embedder(url, embed_probe_interval_s=42).embed(["one text"])
    assert caught.value.reason == "insufficient_quota" and caught.value.retry_after_s == 42
    assert len(api.log) == 1


@pytest.mark.parametrize(("status", "reason"), [(401, "authentication"), (403, "permission")])
def test_bad_credentials_are_not_retried(status: int, reason: str) -> None:
    api = EmbeddingsApi(fail_next=[Fault(status)])
    with serving(api) as url, pytest.raises(ProviderRefused) as caught:
        _embedder(url).embed(["one text"])
    assert caught.value.reason == reason and len(api.log) == 1


def test_a_hung_provider_times_out_into_back_pressure() -> None:
    api = EmbeddingsApi(hang_s=3.0)
    started = time.monotonic()
    with serving(api) as url, pytest.raises(DownstreamUnavailable, match="unreachable"):
        _embedder(url, openai_timeout_s=0.5).embed(["one text"])
    assert time.monotonic() - started < 2.9  # gave up on its own timeout, not the server's


def test_requests_are_paced_by_the_rate_limit_the_server_reports() -> None:
    api = EmbeddingsApi(requests_per_minute=2)
    with serving(api) as url:
        embedder = _embedder(url)
        embedder.embed(["first"])
        embedder.embed(["second"])  # the server now reports 0 requests left for ~60 s
        with pytest.raises(DownstreamUnavailable, match="pacing") as caught:
            embedder.embed(["third"])
    # Learnt from the headers (nothing was configured): 2 a minute, refilled continuously.
    assert caught.value.retry_after_s == pytest.approx(30.0, abs=1.0)
    assert [e.status for e in api.log] == [200, 200]  # the third was never sent


# --- the local model ---------------------------------------------------------------------------
_PASSAGES = [
    "lm fits linear models: regression, analysis of variance and covariance.",
    "read.csv reads a file in table format and creates a data frame from it.",
    "hist computes a histogram of the given data values and plots it.",
    "solve inverts a square matrix or solves a system of linear equations.",
]
_QUERIES = ["fit a linear regression", "load a CSV file", "draw a histogram", "invert a matrix"]


def test_the_dynamically_quantized_model_is_derived_once_and_reused(tmp_path: Path) -> None:
    image_dir, cache_dir = tmp_path / "image", tmp_path / "cache"
    first = LocalMiniLM(model_dirs=[image_dir, cache_dir]).model_file()
    assert first.parent == cache_dir and first.is_file()
    made = first.stat().st_mtime_ns
    again = LocalMiniLM(model_dirs=[image_dir, cache_dir]).model_file()
    assert again == first and again.stat().st_mtime_ns == made
    assert not list(cache_dir.glob("*.part"))  # no scratch file left behind
    assert not image_dir.exists()


def test_an_unwritable_cache_falls_back_to_the_next_directory(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    unwritable = tmp_path / "a-file" / "models"  # under a file: cannot be made, even by root
    made = LocalMiniLM(model_dirs=[tmp_path / "image", unwritable]).model_file()
    assert made.parent == tmp_path / "image"


def test_a_model_file_in_the_installations_directory_is_used_first(tmp_path: Path) -> None:
    made = LocalMiniLM(model_dirs=[tmp_path / "cache"]).model_file()
    image_dir = tmp_path / "image"
    image_dir.mkdir()
    shutil.copy(made, image_dir / made.name)
    assert LocalMiniLM(model_dirs=[image_dir, tmp_path / "other"]).model_file().parent == image_dir
    assert not (tmp_path / "other").exists()


def test_both_local_models_find_each_querys_passage_and_agree_closely() -> None:
    dynamic, weights = LocalMiniLM(quantization="dynamic"), LocalMiniLM(quantization="weights")
    assert dynamic.model != weights.model  # their vectors are never mixed in the cache
    for model in (dynamic, weights):
        scores = np.asarray(model.embed(_QUERIES)) @ np.asarray(model.embed(_PASSAGES)).T
        assert list(scores.argmax(axis=1)) == [0, 1, 2, 3]
    agreement = np.sum(
        np.asarray(dynamic.embed(_PASSAGES)) * np.asarray(weights.embed(_PASSAGES)), axis=1
    )
    assert agreement.min() > 0.97, agreement


def test_the_local_model_uses_every_cpu_it_may_run_on_unless_told() -> None:
    assert LocalMiniLM().threads == len(os.sched_getaffinity(0))
    assert LocalMiniLM(threads=1).threads == 1


def test_the_embed_stage_loads_its_local_model_when_it_starts() -> None:
    from streams import embed

    stage = embed.make_stage(Settings(embedder="local", embed_cache=False))
    # Loaded before the first document, which would otherwise wait for it.
    assert "_session" in vars(stage.handle.embedder)  # type: ignore[attr-defined]


@pytest.mark.parametrize("quantization", ["dynamic", "weights"])
def test_a_texts_local_vector_does_not_depend_on_the_texts_embedded_with_it(
    quantization: str,
) -> None:
    model = LocalMiniLM(quantization=quantization)  # type: ignore[arg-type]
    alone = model.embed(_PASSAGES[:1])
    crowded = model.embed([_PASSAGES[0], *(p * 6 for p in _PASSAGES[1:]), *_QUERIES])
    np.testing.assert_allclose(crowded[0], alone[0], atol=1e-5)
