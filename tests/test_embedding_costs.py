"""End to end on the real stack, the embed stage paying the local OpenAI-compatible server
through the real `openai` client: 429 bursts, an exhausted quota, the provider's request limits,
and documents that cost nothing the second time."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from docstreams_dev.servers.openai_server import EmbeddingsApi, Fault, Logged, serving
from streams.pipeline import APPS
from streams.producer import submit
from streams.progress import follow
from streams.settings import Settings
from streams.status_client import document_status
from tests.apps_helpers import (
    TENANT,
    app_url,
    embedded_chunk_ids,
    free_port_block,
    indexed_chunk_ids,
    indexed_count,
    isolated,
    running_apps,
    submit_and_wait,
)
from tests.kafka_helpers import wait_for

pytestmark = pytest.mark.stack
PROBE_S = 6.0
MAX_INPUTS, MAX_REQUEST_TOKENS = 8, 900  # small, so that a document needs many full requests


@dataclass
class Paid:
    settings: Settings
    api: EmbeddingsApi
    embed_url: str  # the embed process's /metrics, /readyz, /resume


@pytest.fixture(scope="module")
def paid(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Paid]:
    api = EmbeddingsApi(max_inputs=MAX_INPUTS, max_tokens_per_request=MAX_REQUEST_TOKENS)
    port = free_port_block(len(APPS))
    with serving(api) as url:
        settings = isolated(
            stack_settings,
            tmp_path_factory,
            "cost",
            embedder="openai",
            openai_base_url=url,
            openai_api_key="sk-test",
            openai_dimensions=384,
            embed_max_inputs_per_request=MAX_INPUTS,
            embed_max_tokens_per_request=MAX_REQUEST_TOKENS,
            embed_probe_interval_s=PROBE_S,
            metrics_port=port,
        )
        with running_apps(settings):
            yield Paid(settings, api, app_url(settings, "embed"))


def _text_document(folder: Path, name: str, paragraphs: int) -> Path:
    """Distinct wording per document (and per paragraph): nothing in it is cached yet."""
    salt = uuid.uuid4().hex[:6]
    lines = [
        f"Paragraph {i} of {name} ({salt}): the {i}th pier takes vessels of {i * 7} metres "
        f"and its lamp burns {i % 5 + 1} hours after dusk."
        for i in range(paragraphs)
    ]
    path = folder / f"{name}.txt"
    path.write_text("\n\n".join(lines))
    return path


def test_a_429_burst_is_absorbed_waiting_retry_after_without_losing_or_duplicating_chunks(
    paid: Paid, tmp_path: Path
) -> None:
    settings, api = paid.settings, paid.api
    api.fail_next = [Fault(429, {"retry-after": "2"}, "rate_limit_exceeded")] * 3
    first = len(api.log)
    progress = submit_and_wait(settings, str(_text_document(tmp_path, "burst", 60)), "burst")
    assert progress.completed is not None, progress.failure
    log = api.log[first:]
    throttled = [i for i, e in enumerate(log) if e.status == 429]
    assert len(throttled) == 3
    for i in throttled:  # the next request came only after Retry-After
        assert log[i + 1].at - log[i].at >= 2.0
    ids = embedded_chunk_ids(settings, "burst")
    assert len(ids) == len(set(ids)) == progress.completed.chunks
    assert sorted(indexed_chunk_ids(settings, "burst")) == sorted(ids)
    status = document_status(settings, TENANT, "burst")
    assert status["tokens_spent"] == sum(e.tokens for e in log if e.status == 200) > 0


def test_requests_never_exceed_the_providers_input_and_token_limits(
    paid: Paid, tmp_path: Path
) -> None:
    settings, api = paid.settings, paid.api
    first = len(api.log)
    progress = submit_and_wait(settings, str(_text_document(tmp_path, "limits", 300)), "limits")
    assert progress.completed is not None, progress.failure
    log = api.log[first:]
    assert [e for e in log if e.status == 400] == []  # the server refuses any request over them
    assert all(e.inputs <= MAX_INPUTS and e.tokens <= MAX_REQUEST_TOKENS for e in log)
    # Requests are filled, not one per window: most carry as many inputs as allowed.
    full = [e for e in log if e.inputs == MAX_INPUTS or e.tokens > MAX_REQUEST_TOKENS * 0.8]
    assert len(full) >= len(log) - progress.completed.chunks // MAX_INPUTS // 2


def test_an_exhausted_quota_pauses_without_a_retry_storm_and_resumes_once_cleared(
    paid: Paid, tmp_path: Path
) -> None:
    settings, api = paid.settings, paid.api
    api.quota_exhausted = True
    first = len(api.log)
    request = submit(settings, str(_text_document(tmp_path, "quota", 20)), TENANT, "quota")

    def refused() -> list[Logged]:
        return [e for e in api.log[first:] if e.code == "insufficient_quota"]

    # The first try and two probes: a retry storm would have sent many more in between.
    wait_for(lambda: len(refused()) >= 3, 120 + 3 * PROBE_S)
    assert all(b.at - a.at >= PROBE_S * 0.9 for a, b in itertools.pairwise(refused()))
    ready = httpx.get(f"{paid.embed_url}/readyz")
    assert ready.status_code == 503 and "insufficient_quota" in ready.json()["paused_because"]
    page = httpx.get(f"{paid.embed_url}/metrics").text
    assert "docstreams_embedder_refused 1.0" in page
    assert 'docstreams_provider_refused{stage="embed"} 1.0' in page

    api.quota_exhausted = False
    progress = follow(settings, TENANT, "quota", request.submitted_at, timeout_s=120)
    assert progress.completed is not None, progress.failure
    cleared = httpx.get(f"{paid.embed_url}/metrics").text
    assert "docstreams_embedder_refused 0.0" in cleared
    assert 'docstreams_provider_refused{stage="embed"} 0.0' in cleared
    wait_for(lambda: httpx.get(f"{paid.embed_url}/readyz").status_code == 200, 30)


def test_an_operator_can_resume_a_refused_stage_before_its_next_probe(
    paid: Paid, tmp_path: Path
) -> None:
    settings, api = paid.settings, paid.api
    api.fail_next = [Fault(401, {}, "invalid_api_key")]
    first = len(api.log)
    request = submit(settings, str(_text_document(tmp_path, "key", 5)), TENANT, "key")
    wait_for(lambda: any(e.status == 401 for e in api.log[first:]), 120)
    refused_at = next(e.at for e in api.log[first:] if e.status == 401)
    answer = httpx.post(f"{paid.embed_url}/resume")
    assert answer.status_code == 202
    progress = follow(settings, TENANT, "key", request.submitted_at, timeout_s=120)
    assert progress.completed is not None, progress.failure
    retried_at = next(e.at for e in api.log[first:] if e.status == 200)
    assert retried_at - refused_at < PROBE_S  # not the probe: the resume


def test_the_same_content_again_costs_no_tokens(paid: Paid, tmp_path: Path) -> None:
    settings, api = paid.settings, paid.api
    path = _text_document(tmp_path, "twice", 40)
    first = submit_and_wait(settings, str(path), "twice-a")
    assert first.completed is not None and first.completed.tokens_spent > 0
    served = api.tokens_served
    second = submit_and_wait(settings, str(path), "twice-b")  # another document, the same text
    assert second.completed is not None, second.failure
    assert second.completed.tokens_spent == 0 and api.tokens_served == served
    status = document_status(settings, TENANT, "twice-b")
    assert status["tokens_from_cache"] == first.completed.tokens_spent
    assert status["chunks"] == first.completed.chunks == indexed_count(settings, "twice-b")
