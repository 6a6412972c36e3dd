"""Search on a real Weaviate, in every mode (hybrid, vector, keyword): a tenant sees only its own
chunks, only the current version of a document is shown, exact part numbers rank first where
words count, and keyword search works without any embedding model."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import orjson
import pytest
from typer.testing import CliRunner

from streams import weaviate_clients
from streams.adapters.embedders import LocalMiniLM
from streams.adapters.weaviate_store import ChunkIndex, CurrentVersion, Hit, SearchMode
from streams.cli import app
from streams.messages import EmbeddedChunk, VectorBatch, encode_vector
from streams.settings import Settings, as_environment

pytestmark = pytest.mark.stack
MODES: tuple[SearchMode, ...] = ("hybrid", "vector", "keyword")
V0, V1 = "0" * 64, "1" * 64

# One manual per tenant under the same document id. Only the harbour's first version says
# "seawater"; its second says "rainwater" instead. Part numbers differ by one digit.
HARBOUR_V0 = [
    "The bilge pump QZ-7781 must be primed with two litres of seawater before its first start.",
    *(
        f"The bilge pump QZ-77{n} keeps the engine room dry; check its strainer every month."
        for n in range(82, 90)
    ),
]
HARBOUR_V1 = [HARBOUR_V0[0].replace("seawater", "rainwater"), *HARBOUR_V0[1:]]
ORCHARD = [
    "Prune the apple trees in late winter, before the buds swell.",
    "Young pear trees need a stake for their first three summers.",
    "Net the cherries in June or the starlings take the crop.",
]


@pytest.fixture(scope="module")
def embedder() -> LocalMiniLM:
    return LocalMiniLM()


@pytest.fixture(scope="module")
def settings(stack_settings: Settings, embedder: LocalMiniLM) -> Iterator[Settings]:
    settings = stack_settings.model_copy(
        update={"weaviate_collection": f"Search{uuid.uuid4().hex[:10]}"}
    )
    index = ChunkIndex(settings)
    try:
        write(index, embedder, "harbour", V0, HARBOUR_V0)
        index.make_current("harbour", "manual", CurrentVersion(V0, len(HARBOUR_V0)))
        write(index, embedder, "orchard", V0, ORCHARD)
        index.make_current("orchard", "manual", CurrentVersion(V0, len(ORCHARD)))
        yield settings
        index.client.collections.delete([index.name, index.registry_name])
    finally:
        index.close()


def write(
    index: ChunkIndex, embedder: LocalMiniLM, tenant: str, version: str, texts: list[str]
) -> None:
    vectors = embedder.embed(texts)
    batch = VectorBatch(tenant_id=tenant, document_id="manual", version=version, window=0,
                        window_count=1, anchor="p1", content_type="application/pdf",
                        model=embedder.model, dimensions=len(vectors[0]), chunks=[
        EmbeddedChunk(id=str(uuid.uuid4()), index=i, text=text, page_start=i + 1,
                      page_end=i + 1, tokens=len(text.split()), vector=encode_vector(vector))
        for i, (text, vector) in enumerate(zip(texts, vectors, strict=True))])  # fmt: skip
    assert index.index_window(batch).written == len(texts)


def search(
    index: ChunkIndex, embedder: LocalMiniLM, tenant: str, query: str, mode: SearchMode
) -> list[Hit]:
    vector = None if mode == "keyword" else embedder.embed([query])[0].tolist()
    return index.search(tenant, vector, 5, text=query, mode=mode)


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_returns_only_the_searching_tenants_chunks(
    settings: Settings, embedder: LocalMiniLM, mode: SearchMode
) -> None:
    index = ChunkIndex(settings)
    try:
        # The orchard asks in the harbour's words: nothing of the harbour comes back.
        hits = search(index, embedder, "orchard", HARBOUR_V0[0], mode)
        assert all(h.text in ORCHARD for h in hits)
        if mode != "keyword":  # shares a word ("before") with the orchard: some hit
            assert hits
        assert search(index, embedder, "orchard", "seawater bilge QZ-7781", "keyword") == []
        own = search(index, embedder, "harbour", HARBOUR_V0[0], mode)
        assert own[0].text == HARBOUR_V0[0] and all(h.text in HARBOUR_V0 for h in own)
        assert search(index, embedder, "nobody", HARBOUR_V0[0], mode) == []
    finally:
        index.close()


def test_each_mode_shows_only_the_current_version(
    settings: Settings, embedder: LocalMiniLM
) -> None:
    index = ChunkIndex(settings)
    try:
        write(index, embedder, "harbour", V1, HARBOUR_V1)  # written, not yet current
        for mode in MODES:
            hits = search(index, embedder, "harbour", "primed with seawater", mode)
            assert hits[0].text == HARBOUR_V0[0] and {h.version for h in hits} == {V0}, mode
        index.make_current("harbour", "manual", CurrentVersion(V1, len(HARBOUR_V1)))
        assert index.count("harbour", "manual", V0) == len(HARBOUR_V0)  # still stored
        for mode in MODES:
            hits = search(index, embedder, "harbour", "primed with seawater", mode)
            assert hits, mode
            assert {h.version for h in hits} == {V1}, mode
            assert all("seawater" not in h.text for h in hits), mode
        assert search(index, embedder, "harbour", "seawater", "keyword") == []
        rain = search(index, embedder, "harbour", "rainwater", "hybrid")
        assert rain[0].text == HARBOUR_V1[0]
    finally:
        index.make_current("harbour", "manual", CurrentVersion(V0, len(HARBOUR_V0)))
        index.close()


@pytest.mark.parametrize("mode", ["hybrid", "keyword"])
def test_an_exact_part_number_ranks_its_chunk_first_where_words_count(
    settings: Settings, embedder: LocalMiniLM, mode: SearchMode
) -> None:
    index = ChunkIndex(settings)
    try:
        for n in (84, 87):  # chunks that differ from their neighbours by one digit only
            (first, *_) = search(index, embedder, "harbour", f"pump QZ-77{n}", mode)
            assert f"QZ-77{n} " in first.text
            assert first.score is not None and first.page_start == n - 80
    finally:
        index.close()


def test_keyword_search_needs_no_embedding_model(settings: Settings) -> None:
    """The embedder points at a port nothing listens on: keyword mode never calls it."""
    unreachable = settings.model_copy(
        update={"embedder": "openai", "openai_base_url": "http://127.0.0.1:9/v1"}
    )
    env = as_environment(unreachable)
    found = CliRunner().invoke(
        app, ["search", "QZ-7785", "--tenant", "harbour", "--mode", "keyword", "--json"], env=env
    )
    assert found.exit_code == 0, found.output
    (first, *_) = orjson.loads(found.output)
    assert "QZ-7785 " in first["text"] and first["score"] > 0


def test_the_search_command_defaults_to_hybrid_and_checks_alpha(settings: Settings) -> None:
    env = as_environment(settings)
    shown = CliRunner().invoke(app, ["search", "QZ-7786", "--tenant", "harbour"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "hybrid search" in shown.output and "QZ-7786" in shown.output
    refused = CliRunner().invoke(
        app, ["search", "pump", "--tenant", "harbour", "--alpha", "1.5"], env=env
    )
    assert refused.exit_code == 2 and "alpha" in refused.output  # a usage error


def test_a_tenant_seen_is_trusted_for_a_while_and_one_not_seen_is_asked_for_every_time(
    settings: Settings, embedder: LocalMiniLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = ChunkIndex(settings)
    try:
        assert index.search("lighthouse", None, 5, text="lamp", mode="keyword") == []
        # Not there a moment ago: written now, it is found at once (absence is not remembered).
        write(index, embedder, "lighthouse", V0, ["The lamp turns once every ten seconds."])
        index.make_current("lighthouse", "manual", CurrentVersion(V0, 1))
        assert search(index, embedder, "lighthouse", "lamp", "keyword")
        # Removed behind the adapter's back: it takes the tenant to exist until the recheck...
        index.client.collections.use(index.name).tenants.remove(["lighthouse"])
        assert index._has_chunks_tenant("lighthouse")
        # ...and asks Weaviate again once TENANT_RECHECK_S has passed.
        later = time.monotonic() + weaviate_clients.TENANT_RECHECK_S
        monkeypatch.setattr(time, "monotonic", lambda: later)
        assert not index._has_chunks_tenant("lighthouse")
        assert index.search("lighthouse", None, 5, text="lamp", mode="keyword") == []
    finally:
        index.close()
