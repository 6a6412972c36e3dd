"""What an edit costs: a document ingested, then edited in one place at a time and submitted
again under the same id, against a fresh ingest of the same file in the same run.

Two documents made of real text (Debian's R manuals, package r-doc-pdf):

- Markdown of about 5 MB: the manuals' text in paragraphs, a heading every ten; an edit adds a
  sentence inside one paragraph.
- A PDF of 1,200 pages (the first pages of fullrefman.pdf, cut with qpdf); an edit replaces one
  page with a page of another manual (R-intro.pdf), rebuilt with qpdf.

Each is edited at 10 %, 50 % and 90 % of the document, one edit after the other, each version
submitted under the same document id. The embed stage pays the local OpenAI-compatible server
(fast mode) through the real `openai` client, so the tokens paid are what the provider counted.
While each edit is indexed, a poller reads, as search does (objects first, then the version
registry), what search shows of the edited region: it must always be exactly the old version's
or exactly the new one's, never a mix and never nothing. A probe search for an unchanged chunk
must always find the document.

Per edit: tokens paid / tokens of the chunks whose text changed (goal <= 1.5) and / the
document's tokens (<= 1 %), objects written / the document's chunks (<= 1 %), the re-ingest's
wall time / a fresh ingest of the same file in this run (<= 35 %). At the end: the edited
document's searchable objects equal a fresh ingest's (texts and page ranges), an unchanged
re-submit pays nothing and writes nothing, and a delete removes every object.

    .venv/bin/python bench/edit_cost.py [--markdown-mb 5] [--pdf-pages 1200] [--only markdown]

Prints one JSON line per document and one last for the run; exits 1 if a goal is missed.
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson
from weaviate.classes.query import Filter

from bench.run import CACHE, FULLREFMAN, ensure_packages, page_slice
from docstreams_dev.apps import running_apps
from docstreams_dev.servers.openai_server import EmbeddingsApi, serving
from docstreams_dev.stack import Stack
from docstreams_dev.stack.ports import private_stack_settings
from streams.adapters import extractors
from streams.adapters.weaviate_store import ChunkIndex, strings
from streams.producer import request_delete, submit
from streams.progress import DocumentProgress, follow
from streams.settings import Settings

TENANT = "bench"
# Fresh ingests for comparison go to a tenant of their own: the embedding cache is per tenant,
# so they pay (and wait) for every chunk as a first ingest does.
FRESH_TENANT = "bench-fresh"
MANUALS = FULLREFMAN.parent
OTHER_MANUAL = MANUALS / "R-intro.pdf"
EDITS = (0.1, 0.5, 0.9)
GOALS = {"paid_over_changed": 1.5, "paid_share": 0.01, "written_share": 0.01, "time_share": 0.35}
DIMENSIONS = 256
_MOST_RESULTS = 10_000  # Weaviate's QUERY_MAXIMUM_RESULTS
Shown = Counter[tuple[str, int, int]]
Version = Callable[[], tuple[Path, list[str]]]  # writes the next version: (its path, touched)


# --- documents -----------------------------------------------------------------------------
def manual_paragraphs(limit_bytes: int) -> list[str]:
    """The R manuals' text as paragraphs of five sentences, a heading every ten."""
    import pypdfium2

    paragraphs: list[str] = []
    size = 0
    for path in sorted(MANUALS.glob("*.pdf")):
        document = pypdfium2.PdfDocument(str(path))
        try:
            for number in range(len(document)):
                page = document[number]
                text = page.get_textpage().get_text_range()
                page.close()
                sentences = re.split(r"(?<=[.!?])\s+", " ".join(text.split()))
                for start in range(0, len(sentences), 5):
                    if len(paragraphs) % 11 == 0:
                        paragraphs.append(f"## {path.stem}, page {number + 1}")
                    paragraphs.append(" ".join(sentences[start : start + 5]))
                    size += len(paragraphs[-1]) + 2
                    if size >= limit_bytes:
                        return paragraphs
        finally:
            document.close()
    raise RuntimeError(f"the manuals in {MANUALS} hold less than {limit_bytes} bytes of text")


def edit_markdown(paragraphs: list[str], at: float, number: int) -> list[str]:
    """A sentence added inside the paragraph at ``at`` of the document."""
    i = int(len(paragraphs) * at)
    while paragraphs[i].startswith("#") or ". " not in paragraphs[i]:
        i += 1
    first, rest = paragraphs[i].split(". ", 1)
    edited = list(paragraphs)
    edited[i] = f"{first}. Edit {number} of the benchmark changed this paragraph here. {rest}"
    return edited


def write_markdown(path: Path, paragraphs: list[str]) -> Path:
    path.write_text("\n\n".join(paragraphs) + "\n")
    return path


def edit_pdf(source: Path, pages: int, at: float, number: int, target: Path) -> Path:
    """``source`` with one page replaced by a page of another manual, rebuilt with qpdf."""
    page = int(pages * at)
    other = 10 + number  # R-intro's pages 11, 12, 13: prose
    before = ["1-" + str(page - 1)] if page > 1 else []
    after = [f"{page + 1}-{pages}"] if page < pages else []
    spec = [str(source), *before, str(OTHER_MANUAL), str(other), str(source), *after]
    partial = target.with_suffix(".partial.pdf")
    subprocess.run(["qpdf", "--no-warn", "--warning-exit-0", "--empty", "--pages", *spec, "--",
                    str(partial)], check=True)  # fmt: skip
    partial.replace(target)
    return target


# --- what search shows ------------------------------------------------------------------
def shown(index: ChunkIndex, document_id: str, anchors: list[str] | None = None,
          tenant: str = TENANT) -> Shown:  # fmt: skip
    """(text, first page, last page) of the document's objects that search shows (of those
    under ``anchors``, if given), read as search reads: objects first, then the registry."""
    collection = index.client.collections.use(index.name).with_tenant(tenant)
    where = Filter.by_property("document_id").equal(document_id)
    if anchors is not None:
        where = where & Filter.by_property("anchor").contains_any(anchors)
    response = collection.query.fetch_objects(
        filters=where,
        limit=_MOST_RESULTS,
        return_properties=["text", "page_start", "page_end", "version", "dropped_by"],
    )
    if len(response.objects) >= _MOST_RESULTS:
        raise RuntimeError(f"{document_id} has more objects than one query returns")
    found = [o.properties for o in response.objects]
    current = index.current(tenant, document_id)
    if current is None:
        return Counter()
    return Counter(
        (str(p["text"]), int(p["page_start"]), int(p["page_end"]))  # type: ignore[arg-type]
        for p in found
        if current.shows(str(p["version"]), strings(p.get("dropped_by")))
    )


@dataclass
class Poller:
    """Reads what search shows of a region of a document until stopped."""

    settings: Settings
    document_id: str
    anchors: list[str]
    probe: list[float]
    snapshots: list[Shown] = field(default_factory=list)
    probe_misses: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Poller:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def _run(self) -> None:
        index = ChunkIndex(self.settings)
        try:
            while True:
                stopping = self._stop.wait(0.25)
                self.snapshots.append(shown(index, self.document_id, self.anchors))
                hits = index.search(TENANT, self.probe, 10)
                self.probe_misses += not any(h.document_id == self.document_id for h in hits)
                if stopping:  # that last look was after the completion
                    return
        finally:
            index.close()


def region(index: ChunkIndex, document_id: str, touched: list[str]) -> list[str]:
    """The anchors an edit changes objects under: the windows it touches (old and new) and the
    anchors the current version's objects at those windows carry."""
    current = index.current(TENANT, document_id)
    assert current is not None
    carried = {a for anchor in touched if (w := current.windows.get(anchor)) for a in w.sources}
    return sorted(carried | set(touched))


# --- runs ------------------------------------------------------------------------------------
def ingest(settings: Settings, path: Path, document_id: str,
           tenant: str = TENANT) -> tuple[float, DocumentProgress]:  # fmt: skip
    began = time.monotonic()
    request = submit(settings, str(path), tenant, document_id)
    progress = follow(settings, tenant, document_id, request.submitted_at, timeout_s=3600)
    if progress.completed is None:
        raise RuntimeError(f"{document_id} did not complete: {progress.failure}")
    return time.monotonic() - began, progress


def measure_document(
    settings: Settings, api: EmbeddingsApi, name: str, path: Path,
    versions: list[Version],
) -> dict[str, Any]:  # fmt: skip
    """Ingest ``path`` fresh, then each edited version in turn under the same id; the callables
    write the next version to ``path`` and return it with the anchors its edit touches."""
    index = ChunkIndex(settings)
    try:
        fresh_s, first = ingest(settings, path, name)
        assert first.completed is not None
        rows = []
        for number, make_version in enumerate(versions, 1):
            before = shown(index, name)
            path, touched = make_version()
            anchors = region(index, name, touched)
            probe = _probe_vector(index, name, anchors)
            paid_before = api.tokens_served
            with Poller(settings, name, anchors, probe) as poller:
                seconds, progress = ingest(settings, path, name)
            assert progress.completed is not None
            after = shown(index, name)
            rows.append(_edit_row(number, seconds, progress, api.tokens_served - paid_before,
                                  before, after, api, poller))  # fmt: skip
        final = shown(index, name)
        fresh_again_s, fresh = ingest(settings, path, name, FRESH_TENANT)
        assert fresh.completed is not None
        same_as_fresh = shown(index, name, tenant=FRESH_TENANT) == final
        paid_before = api.tokens_served
        _, unchanged = ingest(settings, path, name)
        assert unchanged.completed is not None
        unchanged_cost = {"tokens": api.tokens_served - paid_before,
                          "objects_written": unchanged.state.edit()["objects_written"],
                          "reused_unchanged": unchanged.completed.reused_unchanged}  # fmt: skip
        deleted = _delete(settings, index, name)
    finally:
        index.close()
    for row in rows:
        row["time_share"] = round(row["seconds"] / fresh_again_s, 3)
    result = {
        "document": name,
        "bytes": path.stat().st_size,
        "pages": fresh.state.pages,
        "windows": fresh.state.window_count,
        "chunks": fresh.completed.chunks,
        "document_tokens": sum(api.count_tokens(t) * n for (t, _, _), n in final.items()),
        "fresh_ingest_tokens_paid": fresh.completed.tokens_spent,
        "fresh_ingest_s": round(fresh_s, 1),
        "fresh_ingest_of_edited_file_s": round(fresh_again_s, 1),
        "edits": rows,
        "same_objects_as_fresh_ingest": same_as_fresh,
        "unchanged_resubmit": unchanged_cost,
        "objects_left_after_delete": deleted,
    }
    for row in rows:
        row["paid_share"] = round(row["tokens_paid"] / result["document_tokens"], 5)
        row["written_share"] = round(row["objects_written"] / result["chunks"], 5)
    result["passed"] = _passed(result)
    return result


def _probe_vector(index: ChunkIndex, document_id: str, region: list[str]) -> list[float]:
    """The vector of one of the document's chunks outside the edited region (never changes)."""
    collection = index.client.collections.use(index.name).with_tenant(TENANT)
    where = Filter.by_property("document_id").equal(document_id)
    for o in collection.query.fetch_objects(filters=where, limit=50, include_vector=True).objects:
        if o.properties.get("anchor") not in region:
            return list(o.vector["default"])  # type: ignore[arg-type]
    raise RuntimeError("no chunk outside the edited region")


def _edit_row(number: int, seconds: float, progress: DocumentProgress, paid: int, before: Shown,
              after: Shown, api: EmbeddingsApi, poller: Poller) -> dict[str, Any]:  # fmt: skip
    assert progress.completed is not None
    changed = after - before
    changed_tokens = sum(api.count_tokens(text) * n for (text, _, _), n in changed.items())
    cost = progress.state.edit()
    # Every snapshot of the region must be exactly the old or the new version's view of it.
    region_views = {frozenset(s.items()) for s in poller.snapshots}
    old_view = poller.snapshots[0] if poller.snapshots else Counter()
    new_view = poller.snapshots[-1] if poller.snapshots else Counter()
    mixed = sum(1 for s in poller.snapshots if s not in (old_view, new_view))
    empty = sum(1 for s in poller.snapshots if not s)
    return {
        "edit": number,
        "seconds": round(seconds, 2),
        "tokens_paid": paid,
        "changed_chunks": sum(changed.values()),
        "changed_chunk_tokens": changed_tokens,
        "paid_over_changed": round(paid / changed_tokens, 3) if changed_tokens else None,
        "objects_written": cost["objects_written"],
        "objects_removed": progress.completed.objects_removed,
        "windows_unchanged": cost["windows_unchanged"],
        "windows_changed": cost["windows_changed"],
        "polls": len(poller.snapshots),
        "distinct_views": len(region_views),
        "mixed_views": mixed,
        "empty_views": empty,
        "probe_misses": poller.probe_misses,
        "old_then_new": old_view != new_view,
    }


def _delete(settings: Settings, index: ChunkIndex, document_id: str) -> int:
    request_delete(settings, TENANT, document_id)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if index.count(TENANT, document_id) == 0:
            return 0
        time.sleep(0.5)
    return index.count(TENANT, document_id)


def _passed(result: dict[str, Any]) -> bool:
    edits_ok = all(
        (row["paid_over_changed"] or 0) <= GOALS["paid_over_changed"]
        and row["paid_share"] <= GOALS["paid_share"]
        and row["written_share"] <= GOALS["written_share"]
        and row["time_share"] <= GOALS["time_share"]
        and row["mixed_views"] == row["empty_views"] == row["probe_misses"] == 0
        for row in result["edits"]
    )
    unchanged = result["unchanged_resubmit"]
    return bool(
        edits_ok
        and result["same_objects_as_fresh_ingest"]
        and unchanged["tokens"] == 0
        and unchanged["objects_written"] == 0
        and result["objects_left_after_delete"] == 0
    )


# --- main ------------------------------------------------------------------------------------
def markdown_versions(workdir: Path, megabytes: float) -> tuple[Path, list[Version]]:
    paragraphs = manual_paragraphs(int(megabytes * 2**20))
    path = write_markdown(workdir / "manual.md", paragraphs)
    state = {"paragraphs": paragraphs}

    def version(at: float, number: int) -> Version:
        def make() -> tuple[Path, list[str]]:
            old = extractors.text_spans(path, Settings().text_window_bytes)
            old_text = {s.anchor: extractors.text_span(path, s.start, s.end) for s in old}
            state["paragraphs"] = edit_markdown(state["paragraphs"], at, number)
            write_markdown(path, state["paragraphs"])
            new = extractors.text_spans(path, Settings().text_window_bytes)
            touched = [
                s.anchor
                for s in new
                if old_text.get(s.anchor) != extractors.text_span(path, s.start, s.end)
            ]
            return path, touched + [a for a in old_text if a not in {s.anchor for s in new}]

        return make

    return path, [version(at, n) for n, at in enumerate(EDITS, 1)]


def pdf_versions(workdir: Path, pages: int) -> tuple[Path, list[Version]]:
    source = page_slice(FULLREFMAN, 1, pages, f"fullrefman-1-{pages}.pdf")
    path = workdir / "reference.pdf"
    shutil.copy(source, path)
    per_window = Settings().pages_per_window

    def version(at: float, number: int) -> Version:
        def make() -> tuple[Path, list[str]]:
            edit_pdf(path, pages, at, number, path)
            page = int(pages * at)
            return path, [f"p{(page - 1) // per_window * per_window + 1}"]

        return make

    return path, [version(at, n) for n, at in enumerate(EDITS, 1)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markdown-mb", type=float, default=5.0)
    parser.add_argument("--pdf-pages", type=int, default=1200)
    parser.add_argument("--only", choices=["markdown", "pdf"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    ensure_packages()
    CACHE.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="docstreams-edit-cost-"))
    base = private_stack_settings(workdir / "stack", blob_dir=workdir / "blobs",
                                  local_source_roots=[workdir], batch_max_wait_s=0.2)  # fmt: skip
    stack = Stack(base)
    stack.up()
    api = EmbeddingsApi(fast=True)
    results = []
    try:
        with serving(api) as url:
            settings = base.model_copy(update={
                "embedder": "openai", "openai_base_url": url, "openai_api_key": "sk-bench",
                "openai_dimensions": DIMENSIONS,
            })  # fmt: skip
            documents: dict[str, Callable[[], tuple[Path, list[Version]]]] = {
                "markdown": lambda: markdown_versions(workdir, args.markdown_mb),
                "pdf": lambda: pdf_versions(workdir, args.pdf_pages),
            }
            with running_apps(settings, workdir / "apps.log"):
                time.sleep(10)  # the apps' imports and group joins, outside the timed runs
                for name, make in documents.items():
                    if args.only and name != args.only:
                        continue
                    path, versions = make()
                    result = measure_document(settings, api, name, path, versions)
                    print(orjson.dumps(result).decode(), flush=True)
                    results.append(result)
    finally:
        stack.down()
    ok = all(r["passed"] for r in results)
    print(orjson.dumps({"documents": [r["document"] for r in results], "passed": ok}).decode())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
