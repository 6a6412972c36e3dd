"""The embed stage with its embedding cache in the real Weaviate, paying the local
OpenAI-compatible server: filled requests across messages, no text paid twice, replays free,
tenants kept apart, the cache bounded."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from docstreams_dev.servers.openai_server import EmbeddingsApi, Fault, serving
from streams.adapters.embedders import OpenAIEmbedder
from streams.adapters.embedding_cache import WeaviateEmbeddingCache, cache_key
from streams.embed import Embed
from streams.errors import DownstreamUnavailable
from streams.messages import Chunk, ChunkBatch, VectorBatch, WindowEmbedded
from streams.settings import Settings

pytestmark = pytest.mark.stack


@pytest.fixture
def api() -> Iterator[tuple[EmbeddingsApi, str]]:
    api = EmbeddingsApi(fast=True)
    with serving(api) as url:
        yield api, url


def _stage(settings: Settings, url: str, **overrides: Any) -> Embed:
    settings = settings.model_copy(
        update={"embedder": "openai", "openai_base_url": url, "openai_dimensions": 64,
                "weaviate_collection": f"Cache{uuid.uuid4().hex[:8]}", **overrides}
    )  # fmt: skip
    # The cache's collection is named after WEAVIATE_COLLECTION: a fresh one per stage here.
    embedder = OpenAIEmbedder(settings)
    return Embed(embedder, WeaviateEmbeddingCache(settings, embedder.dimensions))


def _batch(texts: list[str], window: int = 0, tenant: str = "acme") -> ChunkBatch:
    chunks = [
        Chunk(id=str(uuid.uuid4()), index=i, text=t, tokens=len(t.split()), page_start=1,
              page_end=1)
        for i, t in enumerate(texts)
    ]  # fmt: skip
    return ChunkBatch(tenant_id=tenant, document_id="doc", version="a" * 64, window=window,
                      window_count=3, content_type="text/plain", chunks=chunks)  # fmt: skip


def _run(stage: Embed, batches: list[ChunkBatch]) -> list[WindowEmbedded]:
    stage.prepare(batches)
    done = []
    for batch in batches:
        out, event = stage(batch)
        assert isinstance(out, VectorBatch) and isinstance(event, WindowEmbedded)
        assert len(out.chunks) == len(batch.chunks)
        done.append(event)
    return done


def test_chunks_of_several_messages_share_requests_and_repeats_are_sent_once(
    settings: Settings, api: tuple[EmbeddingsApi, str]
) -> None:
    server, url = api
    stage = _stage(settings, url)
    first = _batch(["the harbour master", "tide tables", "the harbour master"], window=0)
    second = _batch(["tide tables", "pilot boarding"], window=1)
    events = _run(stage, [first, second])
    assert server.requests == [["the harbour master", "tide tables", "pilot boarding"]]
    # Billed once, to the first window that had each text; the rest counted as not paid for.
    assert [(e.tokens, e.cached) for e in events] == [(3 + 2, 1), (2, 1)]


def test_a_batch_redone_after_a_failed_request_pays_only_for_what_was_not_yet_paid(
    settings: Settings, api: tuple[EmbeddingsApi, str]
) -> None:
    server, url = api
    stage = _stage(settings, url, embed_max_inputs_per_request=2)
    batch = _batch(["one fish", "two fish", "red fish", "blue fish"])
    # The first request is answered, the second refused with a 500.
    original_answer = server.answer
    calls = {"n": 0}

    def fail_second(request: dict[str, Any]) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            server.fail_next.append(Fault(500, {"retry-after": "5"}))
        return original_answer(request)

    server.answer = fail_second  # type: ignore[method-assign]
    with pytest.raises(DownstreamUnavailable):
        stage.prepare([batch])
    server.answer = original_answer  # type: ignore[method-assign]
    served = server.tokens_served
    (event,) = _run(stage, [batch])
    assert server.requests[-1] == ["red fish", "blue fish"]  # the paid half came from the cache
    assert server.tokens_served - served == event.tokens
    assert event.cached == 2


def test_a_batch_holds_each_vector_only_until_its_last_message_took_it(
    settings: Settings, api: tuple[EmbeddingsApi, str]
) -> None:
    _, url = api
    stage = _stage(settings, url)
    first = _batch(["north quay", "south quay"], window=0)
    second = _batch(["south quay", "east basin"], window=1)
    stage.prepare([first, second])
    stage(first)
    south = stage._key("acme", "south quay")
    assert set(stage._vectors) == {south, stage._key("acme", "east basin")}  # still wanted
    stage(second)
    assert stage._vectors == {}


def test_vectors_are_stored_in_slices_of_the_insert_size_and_all_found_again(
    settings: Settings, api: tuple[EmbeddingsApi, str]
) -> None:
    server, url = api
    stage = _stage(settings, url, weaviate_insert_objects=2)
    texts = [f"berth {n}" for n in range(7)]
    _run(stage, [_batch(texts)])
    requests = len(server.requests)
    replica = _stage(settings, url, weaviate_collection=stage_collection(stage))
    (event,) = _run(replica, [_batch(texts, window=1)])
    assert len(server.requests) == requests and event.cached == 7


def test_a_resubmitted_text_costs_nothing_and_gets_the_same_vector(
    settings: Settings, api: tuple[EmbeddingsApi, str]
) -> None:
    server, url = api
    stage = _stage(settings, url)
    texts = ["lanterns on the pier", "fog and the bell buoy"]
    first, _ = stage(_batch(texts))  # on its own, as after a failed prepare
    requests = len(server.requests)
    replica = _stage(settings, url, weaviate_collection=stage_collection(stage))
    again, event = replica(_batch(texts, window=2))
    assert len(server.requests) == requests  # nothing sent
    assert isinstance(event, WindowEmbedded) and (event.tokens, event.cached) == (0, 2)
    assert isinstance(again, VectorBatch) and isinstance(first, VectorBatch)
    np.testing.assert_array_equal(
        [c.vector_values() for c in again.chunks], [c.vector_values() for c in first.chunks]
    )


def stage_collection(stage: Embed) -> str:
    assert isinstance(stage.cache, WeaviateEmbeddingCache)
    return stage.cache.settings.weaviate_collection


def test_one_tenant_never_reuses_another_tenants_vectors_unless_the_scope_is_global(
    settings: Settings, api: tuple[EmbeddingsApi, str]
) -> None:
    server, url = api
    stage = _stage(settings, url)
    _run(stage, [_batch(["shared wording"], tenant="acme")])
    (event,) = _run(stage, [_batch(["shared wording"], tenant="globex")])
    assert event.tokens > 0 and len(server.requests) == 2

    shared = _stage(settings, url, embed_cache_scope="global")
    _run(shared, [_batch(["common wording"], tenant="acme")])
    (event,) = _run(shared, [_batch(["common wording"], tenant="globex")])
    assert (event.tokens, event.cached) == (0, 1) and len(server.requests) == 3


def test_the_cache_is_swept_down_to_its_bound_oldest_first(
    settings: Settings, api: tuple[EmbeddingsApi, str]
) -> None:
    _, url = api
    stage = _stage(settings, url, embed_cache_max_objects=3)
    for i in range(5):  # one write each: created_at orders them
        _run(stage, [_batch([f"note number {i}"])])
    cache = stage.cache
    assert isinstance(cache, WeaviateEmbeddingCache)
    assert cache.sweep("acme") == 2
    keys = [cache_key(stage.embedder.model, 64, f"note number {i}") for i in range(5)]
    assert set(cache.get("acme", keys)) == set(keys[2:])
