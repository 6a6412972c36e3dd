"""Stages as plain functions: data in, data out, no Kafka (real files, the real local model)."""

from __future__ import annotations

import itertools
import re
import uuid
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import docx
import numpy as np
import pytest
from prometheus_client import REGISTRY

from streams.adapters import extractors
from streams.adapters.blobstore import LocalBlobStore
from streams.adapters.embedders import LocalMiniLM
from streams.adapters.fetch import AddressGuard, Fetcher
from streams.chunk import CHUNK_NAMESPACE, Chunker
from streams.download import Download
from streams.embed import Embed
from streams.errors import PoisonInput, ResourceLimitExceeded
from streams.extract import Extract
from streams.messages import (
    ChunkBatch,
    DocumentPlanned,
    DocumentSubmitted,
    ExtractTask,
    Page,
    PageBatch,
    VectorBatch,
    WindowChunked,
    WindowEmbedded,
    WindowExtracted,
    content_key,
)
from streams.settings import Settings
from tests.hostile_files import drawing_heavy_pdf
from tests.pdfs import ROOT, SAMPLE, SAMPLE_PAGE, SAMPLE_SENTENCE, numbered_pages, write_pdf
from tests.real_pdfs import real_pdf

VERSION = "a1" * 32
EMBEDDER = LocalMiniLM()


def _settings(tmp_path: Path, **changes: object) -> Settings:
    return Settings(blob_dir=tmp_path / "blobs", local_source_roots=[tmp_path, ROOT], **changes)  # type: ignore[arg-type]


class NothingIndexedYet:
    """The version lookup of a fresh index (the unchanged path is tested on the real stack)."""

    def current(self, tenant_id: str, document_id: str) -> None:
        return None


def _download(tmp_path: Path, source: Path, **changes: object) -> list[object]:
    settings = _settings(tmp_path, **changes)
    fetcher = Fetcher(
        AddressGuard(), timeout_s=5, attempts=1, max_bytes=2**30, local_roots=[tmp_path, ROOT]
    )
    stage = Download(settings, LocalBlobStore(settings.blob_dir), fetcher, NothingIndexedYet())
    return list(stage(DocumentSubmitted(tenant_id="t1", document_id="d1", source=str(source))))


def test_download_plans_one_task_per_page_window(tmp_path: Path) -> None:
    pdf = write_pdf(tmp_path / "long.pdf", numbered_pages(120))
    outputs = _download(tmp_path, pdf, pages_per_window=25)
    tasks = [o for o in outputs if isinstance(o, ExtractTask)]
    (planned,) = [o for o in outputs if isinstance(o, DocumentPlanned)]
    assert [(t.window, t.page_start, t.page_end) for t in tasks] == [
        (0, 1, 25), (1, 26, 50), (2, 51, 75), (3, 76, 100), (4, 101, 120)
    ]  # fmt: skip
    assert (planned.pages, planned.window_count, planned.content_type) == (120, 5, extractors.PDF)
    assert all(t.version == planned.version and t.window_count == 5 for t in tasks)


@pytest.mark.parametrize("backend", ["pypdfium2", "pypdf"])
def test_extract_reads_only_its_window_with_either_backend(tmp_path: Path, backend: str) -> None:
    pdf = write_pdf(tmp_path / "long.pdf", numbered_pages(60))
    tasks = [o for o in _download(tmp_path, pdf) if isinstance(o, ExtractTask)]
    extract = Extract(_settings(tmp_path, pdf_backend=backend), LocalBlobStore(tmp_path / "blobs"))
    batch = extract(tasks[1])[0]
    assert isinstance(batch, PageBatch)
    assert [p.number for p in batch.pages] == list(range(26, 51))
    assert all(f"harbour-page-{p.number}." in p.text for p in batch.pages)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: write_pdf(p, ["secret"], password="pw"), "encrypted PDF"),
        (lambda p: p.write_bytes(SAMPLE.read_bytes()[:1500]) and p, "truncated or corrupt"),
        (lambda p: p.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(500)) and p, "binary content"),
    ],
)
def test_unreadable_documents_are_refused_with_a_precise_reason(
    tmp_path: Path, make: object, reason: str
) -> None:
    path = tmp_path / "bad.pdf"
    make(path)  # type: ignore[operator]
    with pytest.raises(PoisonInput, match=reason):
        _download(tmp_path, path)


def test_text_windows_partition_the_file_by_whole_lines(tmp_path: Path) -> None:
    lines = [f"line {i} " + "x" * (i % 37) for i in range(3000)]
    path = tmp_path / "big.txt"
    path.write_text("\n".join(lines) + "\n")
    spans = extractors.text_spans(path, 4096)
    assert spans[0].start == 0 and spans[-1].end == path.stat().st_size
    assert all(a.end == b.start for a, b in itertools.pairwise(spans))
    assert all(2048 <= s.end - s.start <= 8192 + 60 for s in spans[:-1])
    assert len({s.anchor for s in spans}) == len(spans)
    texts = [extractors.text_span(path, s.start, s.end) for s in spans]
    assert "\n".join(texts).split("\n") == lines


def test_text_windows_planned_by_an_earlier_release_still_read_by_byte_window(
    tmp_path: Path,
) -> None:
    lines = [f"line {i} " + "x" * (i % 37) for i in range(3000)]
    path = tmp_path / "big.txt"
    path.write_text("\n".join(lines) + "\n")
    size = path.stat().st_size
    window_bytes = 4096
    texts = [extractors.text_window(path, w, window_bytes) for w in range(size // window_bytes + 1)]
    assert "\n".join(t for t in texts if t).split("\n") == lines


def test_sniff_trusts_bytes_not_names(tmp_path: Path) -> None:
    pdf = tmp_path / "looks.txt"
    pdf.write_bytes(SAMPLE.read_bytes())
    html = tmp_path / "page.pdf"
    html.write_text("<!DOCTYPE html><html><body><p>Hi</p></body></html>")
    md = tmp_path / "notes.md"
    md.write_text("# Title\n\ntext")
    word = tmp_path / "report.bin"
    document = docx.Document()
    document.add_paragraph("Quarterly report")
    document.save(str(word))
    archive = tmp_path / "other.docx"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("a.txt", "not a word file")
    assert extractors.sniff(pdf, "looks.txt") == extractors.PDF
    assert extractors.sniff(html, "page.pdf") == extractors.HTML
    assert extractors.sniff(md, "notes.md") == extractors.MARKDOWN
    assert extractors.sniff(word, None) == extractors.DOCX
    with pytest.raises(PoisonInput, match="not DOCX"):
        extractors.sniff(archive, "other.docx")


def test_html_and_docx_become_plain_text(tmp_path: Path) -> None:
    html = tmp_path / "page.html"
    html.write_text("<html><head><style>p{}</style><script>x=1</script></head>"
                    "<body><h1>Tides</h1><p>High water at noon.</p></body></html>")  # fmt: skip
    word = tmp_path / "doc.docx"
    document = docx.Document()
    document.add_paragraph("Berth twelve is reserved.")
    document.save(str(word))
    assert extractors.html_text(html) == "Tides\nHigh water at noon."
    assert extractors.docx_text(word) == "Berth twelve is reserved."


def _pages(texts: list[str]) -> PageBatch:
    return PageBatch(tenant_id="t1", document_id="d1", version=VERSION, window=2, window_count=4,
                     anchor="p11", fingerprint="f" * 32,
                     pages=[Page(number=i + 11, text=t) for i, t in enumerate(texts)],
                     content_type=extractors.PDF)  # fmt: skip


def test_chunks_keep_their_page_ranges_token_limits_and_content_ids() -> None:
    pages = [f"Page marker p{n}. " + "The tide turns twice a day. " * 40 for n in range(11, 15)]
    chunker = Chunker(EMBEDDER, max_tokens=64, overlap=8)
    out, done = chunker(_pages(pages))
    assert isinstance(out, ChunkBatch) and isinstance(done, WindowChunked)
    assert done.items == len(out.chunks) > 4
    assert len({c.id for c in out.chunks}) == len(out.chunks)  # repeated texts: by ordinal
    other_version, _ = chunker(_pages(pages).model_copy(update={"version": "b2" * 32}))
    assert isinstance(other_version, ChunkBatch)  # the same text in a new version: same ids
    assert [c.id for c in other_version.chunks] == [c.id for c in out.chunks]
    for chunk in out.chunks:
        assert chunk.tokens <= 64
        for n in range(11, 15):
            if f"p{n}." in chunk.text:
                assert chunk.page_start <= n <= chunk.page_end
    assert out.chunks[0].page_start == 11 and out.chunks[-1].page_end == 14
    again, _ = chunker(_pages(pages))
    assert again == out  # deterministic: a replay yields the same chunks and ids


def test_chunk_ids_are_the_uuid5_of_the_document_window_and_content_forever() -> None:
    # Weaviate object ids derive from them: computed without uuid's objects, they must stay
    # exactly what uuid.uuid5 gives for the documented name.
    pages = ["Tide tables. " * 30 + "Déjà vu, 東京 🙂. " * 20, "The tide turns. " * 60]
    batch = _pages(pages)
    out, _ = Chunker(EMBEDDER, max_tokens=48, overlap=8)(batch)
    assert isinstance(out, ChunkBatch) and len(out.chunks) > 4
    seen: Counter[str] = Counter()
    anchor = batch.anchor or f"w{batch.window}.{batch.version}"
    for chunk in out.chunks:
        key = content_key(chunk)
        name = (
            f"{batch.tenant_id}/{batch.document_id}/{batch.fingerprint}/{anchor}/{key}/{seen[key]}"
        )
        assert chunk.id == str(uuid.uuid5(CHUNK_NAMESPACE, name))
        seen[key] += 1


def test_a_window_without_text_yields_an_empty_batch_not_an_error() -> None:
    out, done = Chunker(EMBEDDER, 64, 8)(_pages(["", "  "]))
    assert isinstance(out, ChunkBatch) and out.chunks == []
    assert isinstance(done, WindowChunked) and done.items == 0


def test_embed_returns_normalised_vectors_that_rank_the_right_chunk_first() -> None:
    chunker = Chunker(EMBEDDER, 64, 0)
    chunks, _ = chunker(_pages(["The harbour master lights forty-two blue lanterns.",
                                "Grain and timber are loaded at berth five."]))  # fmt: skip
    assert isinstance(chunks, ChunkBatch)
    out, done = Embed(EMBEDDER)(chunks)
    assert isinstance(out, VectorBatch) and isinstance(done, WindowEmbedded)
    vectors = np.stack([c.vector_values() for c in out.chunks])
    assert vectors.shape == (len(chunks.chunks), 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-4)
    query = np.asarray(EMBEDDER.embed(["How many lanterns are lit?"])[0])
    best = out.chunks[int(np.argmax(vectors @ query))]
    assert "lanterns" in best.text
    assert done.tokens == sum(c.tokens for c in chunks.chunks)


def test_the_bundled_sample_has_its_sentence_on_its_page() -> None:
    (page,) = extractors.pdf_window("pypdfium2", SAMPLE, SAMPLE_PAGE, SAMPLE_PAGE)
    assert SAMPLE_SENTENCE in " ".join(page.text.split())


def every_page_fails(path: Path, first: int, last: int) -> list[extractors.PageText]:
    return [extractors.PageText(n, "", "PdfiumError: bad page") for n in range(first, last + 1)]


def first_page_fails(path: Path, first: int, last: int) -> list[extractors.PageText]:
    return [
        extractors.PageText(first, "", "PdfiumError: bad page"),
        *(extractors.PageText(n, f"page {n}") for n in range(first + 1, last + 1)),
    ]


def test_a_window_whose_every_page_fails_is_refused_not_indexed_empty(tmp_path: Path) -> None:
    tasks = [o for o in _download(tmp_path, SAMPLE) if isinstance(o, ExtractTask)]
    extract = Extract(_settings(tmp_path), LocalBlobStore(tmp_path / "blobs"))
    extract.pdf_pages = every_page_fails  # (run in the parser's child: importable by name)
    with pytest.raises(PoisonInput, match="every page of window 0 failed"):
        extract(tasks[0])
    extract.pdf_pages = first_page_fails
    batch = extract(tasks[0])[0]
    assert isinstance(batch, PageBatch) and batch.pages[0].error  # one bad page is recorded


@pytest.fixture
def no_open_pdf() -> Iterator[None]:
    extractors.close_open_pdf()
    yield
    extractors.close_open_pdf()


@pytest.mark.parametrize("backend", ["pypdfium2", "pypdf"])
def test_a_pdf_stays_open_for_the_next_window_while_memory_is_under_the_bound(
    tmp_path: Path, backend: str, no_open_pdf: None
) -> None:
    path = write_pdf(tmp_path / "book.pdf", numbered_pages(6))
    first = extractors.pdf_window(backend, path, 1, 3, keep_mb=100_000)
    kept = extractors._open_pdf
    second = extractors.pdf_window(backend, path, 4, 6, keep_mb=100_000)
    still = extractors._open_pdf
    assert kept is not None and still is kept  # not reopened
    reopened = [*extractors.pdf_window(backend, path, 1, 3, keep_mb=0),
                *extractors.pdf_window(backend, path, 4, 6, keep_mb=0)]  # fmt: skip
    closed = extractors._open_pdf
    assert closed is None  # over the bound: closed after each window
    assert [p.text for p in [*first, *second]] == [p.text for p in reopened]
    assert "page 5" in second[1].text.lower()


def test_another_file_or_a_replaced_one_is_opened_afresh(tmp_path: Path, no_open_pdf: None) -> None:
    book = write_pdf(tmp_path / "book.pdf", numbered_pages(3, "harbour"))
    other = write_pdf(tmp_path / "other.pdf", numbered_pages(3, "lighthouse"))
    extractors.pdf_window("pypdfium2", book, 1, 1, keep_mb=100_000)
    (page,) = extractors.pdf_window("pypdfium2", other, 1, 1, keep_mb=100_000)
    assert "lighthouse" in page.text
    replacement = write_pdf(tmp_path / "new.pdf", numbered_pages(3, "orchard"))
    replacement.replace(other)  # same path, another file
    (page,) = extractors.pdf_window("pypdfium2", other, 1, 1, keep_mb=100_000)
    assert "orchard" in page.text


@pytest.mark.parametrize(
    "name",
    ["harbour_handbook", "drawing_in_a_form", "outline_with_invalid_destinations",
     "jbig2_scan_with_global_segments", "broken_linearization_dictionary",
     "encrypted_with_an_owner_password_only", "content_stream_syntax_errors",
     "truetype_font_without_unicode_map"],
)  # fmt: skip
def test_a_page_read_without_its_drawing_has_the_text_of_the_whole_read(
    tmp_path: Path, name: str
) -> None:
    """What a page over the parser's budget falls back to gives each page the text that
    reading it whole gives (real PDFs: fonts without a Unicode map, syntax errors in content
    streams, encryption, scans)."""
    if name == "harbour_handbook":
        pdf = SAMPLE
    elif name == "drawing_in_a_form":
        pdf = drawing_heavy_pdf(tmp_path / "atlas.pdf", drawn_page=2, paths=2_000, in_form=True)
    else:
        pdf = real_pdf(name)
    whole = extractors.pdf_window("pypdfium2", pdf, 1, extractors.pdf_page_count(pdf))
    without_drawing = [extractors.pdf_page_text_only(pdf, page.number) for page in whole]
    assert [(p.number, p.text, p.error) for p in without_drawing] == [
        (p.number, p.text, None) for p in whole
    ]
    assert sum(len(p.text) for p in whole) > 0


def test_a_page_that_cannot_be_read_without_its_drawing_is_that_pages_error(
    tmp_path: Path,
) -> None:
    """An error of the fallback reader is the page's, as the whole read's is: it must not
    fail the window and its other pages."""
    pdf = write_pdf(tmp_path / "short.pdf", numbered_pages(2))
    page = extractors.pdf_page_text_only(pdf, 5)  # no such page: pdfium cannot copy it
    assert page.number == 5 and page.text == ""
    assert page.error is not None and page.error.startswith("PdfiumError")


def _over_memory(then: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "docstreams_parser_over_memory_total", {"stage": "extract", "then": then}
        )
        or 0.0
    )


def _extract_under_budget(
    tmp_path: Path, pdf: Path, budget_mb: int
) -> tuple[PageBatch, WindowExtracted, dict[str, float]]:
    """The PDF's one window through Extract and its real parser child, allowed ``budget_mb``;
    what the stage did over the budget, counted."""
    settings = _settings(tmp_path, parser_resident_mb=budget_mb)
    (task,) = [o for o in _download(tmp_path, pdf) if isinstance(o, ExtractTask)]
    extract = Extract(settings, LocalBlobStore(settings.blob_dir))
    steps = ("fresh", "page_by_page", "text_only", "page_lost")
    before = {then: _over_memory(then) for then in steps}
    try:
        batch, done = extract(task)
    finally:
        extract.parser.close()
    assert isinstance(batch, PageBatch) and isinstance(done, WindowExtracted)
    return batch, done, {then: _over_memory(then) - before[then] for then in steps}


@pytest.mark.parametrize("in_form", [False, True], ids=["on_the_page", "in_a_form"])
def test_a_pdf_page_whose_drawing_is_over_the_resident_budget_keeps_its_text(
    tmp_path: Path, in_form: bool
) -> None:
    """Page 2 is a drawing of 600,000 lines (pdfium: ~150 MB); the child may hold 96 MB. The
    window fails kept open and fresh, then page 2 alone; read without its drawing (in a form
    XObject too), it gives its text, and nothing is lost."""
    pdf = drawing_heavy_pdf(tmp_path / "atlas.pdf", drawn_page=2, paths=600_000, in_form=in_form)
    batch, done, steps = _extract_under_budget(tmp_path, pdf, budget_mb=96)
    page_2 = "Page 2 of the drawing record." + ("\nFigure on page 2." if in_form else "")
    assert [(p.number, p.text, p.error) for p in batch.pages] == [
        (1, "Page 1 of the drawing record.", None),
        (2, page_2, None),
        (3, "Page 3 of the drawing record.", None),
    ]
    assert done.failed_pages == 0
    assert steps == {"fresh": 1, "page_by_page": 1, "text_only": 1, "page_lost": 0}


def test_a_pdf_page_whose_text_alone_is_over_the_resident_budget_is_a_page_error_alone(
    tmp_path: Path,
) -> None:
    """Page 2 shows 300,000 text objects next to its drawing: without the drawing it is still
    over the 96 MB budget, so only page 2 is lost, and its error says why."""
    pdf = drawing_heavy_pdf(
        tmp_path / "ledger.pdf", drawn_page=2, paths=300_000, shown_texts=300_000
    )
    batch, done, steps = _extract_under_budget(tmp_path, pdf, budget_mb=96)
    assert [(p.number, p.text) for p in batch.pages if not p.error] == [
        (1, "Page 1 of the drawing record."),
        (3, "Page 3 of the drawing record."),
    ]
    (lost,) = [p for p in batch.pages if p.error]
    assert lost.number == 2 and lost.text == ""
    assert lost.error is not None and re.search(
        r"resource_limit: memory: extracting page 2 without its drawing needed more than 96 MB "
        r"resident",
        lost.error,
    )
    assert done.failed_pages == 1
    assert steps == {"fresh": 1, "page_by_page": 1, "text_only": 0, "page_lost": 1}


class DiesOfMemory:
    """A parser child that dies over its memory cap the first ``deaths`` calls, and otherwise
    reads page one; it records which reader each call ran."""

    def __init__(self, deaths: int) -> None:
        self.deaths, self.readers = deaths, list[str]()

    def call(
        self, what: str, fn: object, *args: object, **kwargs: object
    ) -> list[extractors.PageText] | extractors.PageText:
        reader = "text_only" if fn is extractors.pdf_page_text_only else "whole"
        self.readers.append(reader)
        if len(self.readers) <= self.deaths:
            raise ResourceLimitExceeded("memory", f"{what}: the parser died")
        page = extractors.PageText(1, "the text of page one")
        return page if reader == "text_only" else [page]


@pytest.mark.parametrize(
    ("deaths", "readers", "outcome"),
    [
        (1, ["whole", "whole"], "extracted"),
        (2, ["whole", "whole", "text_only"], "extracted"),
        (3, ["whole", "whole", "text_only"], "refused"),
    ],
)
def test_a_one_page_window_over_the_cap_is_retried_fresh_then_without_its_drawing_then_refused(
    tmp_path: Path, deaths: int, readers: list[str], outcome: str
) -> None:
    """A kept-open PDF's caches can take the child over its cap on an innocent window: one
    retry in a fresh child; a one-page window that overflows fresh too is read once more
    without its drawing (its only page was just read alone), and refused if that overflows
    too: no page of it could be read (a longer window: the tests above)."""
    pdf = write_pdf(tmp_path / "one.pdf", numbered_pages(1))
    (task,) = [o for o in _download(tmp_path, pdf) if isinstance(o, ExtractTask)]
    parser = DiesOfMemory(deaths)
    extract = Extract(_settings(tmp_path), LocalBlobStore(tmp_path / "blobs"), parser=parser)  # type: ignore[arg-type]
    if outcome == "extracted":
        (batch, _) = extract(task)
        assert isinstance(batch, PageBatch) and batch.pages[0].text == "the text of page one"
    else:
        with pytest.raises(ResourceLimitExceeded, match="memory: extracting pages 1-1: the"):
            extract(task)
    assert parser.readers == readers
