"""An edited document costs what changed, on the real stack: unchanged windows stop at extract,
unchanged chunks keep their Weaviate objects, and what search shows afterwards is exactly what
a fresh ingest of the edited file shows."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner
from weaviate.classes.query import Filter

from streams.adapters.embedders import LocalMiniLM
from streams.adapters.weaviate_store import ChunkIndex, strings
from streams.cli import app
from streams.settings import Settings, as_environment
from streams.status import DocumentState
from tests.apps_helpers import TENANT, indexed_count, isolated, running_apps, submit_and_wait
from tests.kafka_helpers import wait_for
from tests.pdfs import numbered_pages, write_pdf
from tests.test_incremental import edited, markdown

pytestmark = pytest.mark.stack
Shown = Counter[tuple[str, int, int]]


@pytest.fixture(scope="module")
def settings(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    settings = isolated(stack_settings, tmp_path_factory, "edits", text_window_bytes=8192,
                        pages_per_window=10, batch_max_wait_s=0.2)  # fmt: skip
    with running_apps(settings):
        yield settings


def shown(settings: Settings, document_id: str) -> Shown:
    """What search can return of a document: (text, first page, last page) of every object its
    registry entry shows."""
    index = ChunkIndex(settings)
    try:
        current = index.current(TENANT, document_id)
        assert current is not None
        collection = index.client.collections.use(index.name).with_tenant(TENANT)
        found = collection.query.fetch_objects(
            filters=Filter.by_property("document_id").equal(document_id), limit=10_000
        ).objects
    finally:
        index.close()
    return Counter(
        (str(o.properties["text"]), int(o.properties["page_start"]), int(o.properties["page_end"]))  # type: ignore[arg-type]
        for o in found
        if current.shows(str(o.properties["version"]), strings(o.properties.get("dropped_by")))
    )


def _edit_of(state: DocumentState) -> dict[str, int]:
    return state.edit()


def test_an_edited_markdown_file_pays_and_writes_only_its_edited_chunks(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "guide.md"
    paragraphs = markdown(700)
    path.write_text("\n\n".join(paragraphs) + "\n")
    first = submit_and_wait(settings, str(path), "guide")
    assert first.completed is not None and (first.window_count or 0) > 20
    before = shown(settings, "guide")
    path.write_text("\n\n".join(edited(paragraphs, 0.5)) + "\n")
    second = submit_and_wait(settings, str(path), "guide")
    assert second.completed is not None and second.version != first.version
    after = shown(settings, "guide")
    changed = after - before  # chunks whose text is not the old version's
    cost = _edit_of(second.state)
    assert 1 <= cost["windows_changed"] <= 2
    assert cost["windows_unchanged"] == (second.window_count or 0) - cost["windows_changed"]
    assert cost["chunks_new"] == cost["objects_written"] == sum(changed.values()) <= 4
    assert cost["chunks_reused"] == second.completed.chunks - cost["chunks_new"]
    tokens = LocalMiniLM()
    changed_tokens = sum(tokens.count_tokens(text) * n for (text, _, _), n in changed.items())
    assert 0 < second.completed.tokens_spent <= 1.5 * changed_tokens
    shown_status = CliRunner().invoke(
        app, ["status", "guide", "--tenant", TENANT], env=as_environment(settings)
    )
    assert f"{cost['windows_unchanged']} windows unchanged" in shown_status.output
    # Nothing of the old version is left but what the new one shows...
    assert indexed_count(settings, "guide") == sum(after.values()) == second.completed.chunks
    assert second.completed.objects_removed == sum((before - after).values()) > 0
    # ...and it is what a fresh ingest of the edited file makes.
    fresh = submit_and_wait(settings, str(path), "guide-fresh")
    assert fresh.completed is not None and shown(settings, "guide-fresh") == after
    # Submitted again unchanged: nothing paid, nothing written.
    third = submit_and_wait(settings, str(path), "guide")
    assert third.completed is not None and third.completed.reused_unchanged
    assert third.completed.tokens_spent == 0 and shown(settings, "guide") == after


def test_a_pdf_with_one_page_changed_rewrites_only_that_pages_chunks(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "tariff.pdf"
    pages = numbered_pages(40, topic="tariff")
    write_pdf(path, pages)
    first = submit_and_wait(settings, str(path), "tariff")
    assert first.completed is not None
    before = shown(settings, "tariff")
    pages[24] = pages[24].replace("Marker tariff-page-25.", "Marker tariff-page-25 was revised.")
    write_pdf(path, pages)
    second = submit_and_wait(settings, str(path), "tariff")
    assert second.completed is not None
    after = shown(settings, "tariff")
    cost = _edit_of(second.state)
    assert (cost["windows_unchanged"], cost["windows_changed"]) == (3, 1)
    on_page = sum(n for (_, first, last), n in after.items() if first <= 25 <= last)
    assert 1 <= cost["objects_written"] <= on_page
    assert sum((after - before).values()) == cost["objects_written"]
    assert indexed_count(settings, "tariff") == sum(after.values()) == second.completed.chunks
    fresh = submit_and_wait(settings, str(path), "tariff-fresh")
    assert fresh.completed is not None and shown(settings, "tariff-fresh") == after


def test_deleting_an_edited_document_removes_the_objects_of_every_version(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "notes.md"
    paragraphs = markdown(200, seed=11)
    path.write_text("\n\n".join(paragraphs) + "\n")
    submit_and_wait(settings, str(path), "notes")
    path.write_text("\n\n".join(edited(paragraphs, 0.1)) + "\n")
    edit = submit_and_wait(settings, str(path), "notes")
    assert edit.completed is not None and _edit_of(edit.state)["chunks_reused"] > 0
    done = CliRunner().invoke(
        app, ["delete", "notes", "--tenant", TENANT], env=as_environment(settings)
    )
    assert done.exit_code == 0, done.output
    wait_for(lambda: indexed_count(settings, "notes") == 0, timeout_s=60)


def test_an_index_built_by_an_earlier_release_keeps_working_and_is_rewritten_once(
    stack_settings: Settings,
) -> None:
    """Collections as the previous release made them (no anchors, no version lists): search
    still shows the old version; a new version of the document is written whole, switched to
    in one step, and the old objects are then removed."""
    import numpy as np
    from weaviate.classes.config import Configure
    from weaviate.classes.data import DataObject

    from streams.adapters.weaviate_store import (
        _PROPERTIES,
        _VERSION_PROPERTIES,
        CurrentVersion,
        _registry_id,
    )
    from streams.messages import EmbeddedChunk, VectorBatch, encode_vector

    old = stack_settings.model_copy(update={"weaviate_collection": f"Old{uuid.uuid4().hex[:10]}"})
    index = ChunkIndex(old)
    earlier = {"anchor", "dropped_by", "content", "versions", "fingerprint", "windows_json"}
    try:
        made = {index.name: _PROPERTIES, index.registry_name: _VERSION_PROPERTIES}
        for name, properties in made.items():
            index.client.collections.create(
                name,
                vector_config=Configure.Vectors.self_provided(),
                multi_tenancy_config=Configure.multi_tenancy(
                    enabled=True, auto_tenant_creation=True, auto_tenant_activation=True
                ),
                properties=[p for p in properties if p.name not in earlier],
            )
        vectors = np.eye(3, 8, dtype=np.float32)
        v0, v1 = "0" * 64, "1" * 64
        chunks = index.client.collections.use(index.name).with_tenant(TENANT)
        chunks.data.insert_many([
            DataObject(uuid=str(uuid.uuid4()), vector=vectors[0].tolist(), properties={
                "tenant_id": TENANT, "document_id": "ledger", "version": v0, "window": 0,
                "chunk_index": 0, "page_start": 1, "page_end": 1, "text": "old entry"})
        ])  # fmt: skip
        registry = index.client.collections.use(index.registry_name).with_tenant(TENANT)
        registry.data.insert_many([
            DataObject(uuid=_registry_id(TENANT, "ledger"),
                       properties={"document_id": "ledger", "version": v0, "chunks": 1})
        ])  # fmt: skip
        (hit,) = index.search(TENANT, vectors[0].tolist(), 1)
        assert (hit.text, hit.version) == ("old entry", v0)
        current = index.current(TENANT, "ledger")
        assert current is not None and current.windows == {} and current.fingerprint is None
        # A new version: nothing to reuse (no windows recorded), so it is written whole.
        batch = VectorBatch(tenant_id=TENANT, document_id="ledger", version=v1, window=0,
                            window_count=1, anchor="p1", content_type="application/pdf",
                            model="m", dimensions=8, chunks=[
            EmbeddedChunk(id=str(uuid.uuid4()), index=i, text=f"new entry {i}", page_start=1,
                          page_end=1, tokens=2, vector=encode_vector(vectors[i + 1]))
            for i in range(2)])  # fmt: skip
        assert index.index_window(batch).written == 2  # the new properties were added
        assert index.count(TENANT, "ledger", v1) == 2
        assert index.search(TENANT, vectors[1].tolist(), 1)[0].version == v0  # not yet switched
        index.make_current(TENANT, "ledger", CurrentVersion(v1, 2))
        assert index.remove_replaced(TENANT, "ledger") == 1
        assert {h.text for h in index.search(TENANT, vectors[1].tolist(), 5)} == {
            "new entry 0", "new entry 1"
        }  # fmt: skip
        index.client.collections.delete([index.name, index.registry_name])
    finally:
        index.close()
