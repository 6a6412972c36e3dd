"""An edit costs what changed: content-defined windows, chunk ids that survive edits, and
unchanged windows stopped at extract. Pure stages, no Kafka or Weaviate (the reuse of objects
in Weaviate is tested on the real stack in tests/test_edits.py)."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

from streams.adapters import extractors
from streams.adapters.blobstore import LocalBlobStore
from streams.adapters.embedders import LocalMiniLM
from streams.adapters.fetch import AddressGuard, Fetcher
from streams.adapters.weaviate_store import CurrentVersion, WindowRecord
from streams.chunk import Chunker
from streams.download import Download, reuse_plan
from streams.extract import Extract
from streams.fold import CheckCompletion, fold
from streams.messages import (
    ChunkBatch,
    DocumentPlanned,
    DocumentSubmitted,
    ExtractTask,
    PageBatch,
    WindowExtracted,
)
from streams.settings import Settings
from streams.status import WINDOW_STAGES
from tests.pdfs import SAMPLE, numbered_pages, write_pdf

WINDOWS_OF_25 = [(1, 25), (26, 50), (51, 60)]
WORDS = [
    "harbour",
    "tide",
    "berth",
    "crane",
    "vessel",
    "cargo",
    "pilot",
    "anchor",
    "mooring",
    "lantern",
    "quay",
    "ballast",
    "keel",
    "hull",
    "rudder",
    "dock",
    "manifest",
    "customs",
    "freight",
    "container",
    "gantry",
    "tugboat",
    "buoy",
    "channel",
    "dredge",
    "sounding",
    "chart",
    "beacon",
    "breakwater",
    "jetty",
    "pier",
    "slipway",
    "wharf",
    "lock",
    "sluice",
    "estuary",
    "delta",
]


def markdown(paragraphs: int, seed: int = 7) -> list[str]:
    """Paragraphs of random sentences (no two alike), with a heading every ten."""
    rng = random.Random(seed)
    out = []
    for n in range(paragraphs):
        if n % 10 == 0:
            out.append(f"## Section {n // 10}")
        sentences = [
            " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 16))).capitalize() + "."
            for _ in range(rng.randint(3, 7))
        ]
        out.append(" ".join(sentences))
    return out


def edited(paragraphs: list[str], at: float) -> list[str]:
    """One paragraph changed by a sentence added after its first, at a fraction of the
    document."""
    i = int(len(paragraphs) * at)
    i += paragraphs[i].startswith("#")
    first, rest = paragraphs[i].split(". ", 1)
    copy = list(paragraphs)
    copy[i] = f"{first}. The harbour master added this sentence. {rest}"
    return copy


def write(path: Path, paragraphs: list[str]) -> Path:
    path.write_text("\n\n".join(paragraphs) + "\n")
    return path


def spans_with_text(path: Path, target: int) -> list[tuple[str, str]]:
    return [
        (s.anchor, extractors.text_span(path, s.start, s.end))
        for s in extractors.text_spans(path, target)
    ]


def test_an_edit_moves_text_window_cuts_only_near_itself(tmp_path: Path) -> None:
    original = markdown(3000)
    before = spans_with_text(write(tmp_path / "a.md", original), 16384)
    for at in (0.1, 0.5, 0.9):
        after = spans_with_text(write(tmp_path / "b.md", edited(original, at)), 16384)
        assert len(before) > 30
        changed = set(after) - set(before)
        assert 1 <= len(changed) <= 2, (at, len(changed))
        assert abs(len(after) - len(before)) <= 1
        # The windows after the edit are the same windows, under the same anchors.
        assert after[-5:] == before[-5:] and after[:2] == before[:2]


def test_chunks_of_an_edited_window_keep_their_ids_but_near_the_edit() -> None:
    chunker = Chunker(LocalMiniLM(), max_tokens=64, overlap=8)
    original = markdown(40, seed=3)

    def chunks(paragraphs: list[str]) -> list[str]:
        batch = PageBatch(tenant_id="t1", document_id="d1", version="a" * 64, window=0,
                          window_count=1, anchor="0", fingerprint="f" * 32,
                          content_type=extractors.MARKDOWN,
                          pages=[{"number": 1, "text": "\n\n".join(paragraphs)}])  # type: ignore[list-item]  # fmt: skip
        out = chunker(batch)[0]
        assert isinstance(out, ChunkBatch)
        return [c.id for c in out.chunks]

    before = chunks(original)
    after = chunks(edited(original, 0.5))
    assert len(before) > 30
    assert len(set(after) - set(before)) <= 3  # the edited paragraph's chunks, nothing else
    assert after[:10] == before[:10] and after[-10:] == before[-10:]


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        blob_dir=tmp_path / "blobs", local_source_roots=[tmp_path], text_window_bytes=16384
    )


class Registry:
    """The version lookup, answering with what the test put there."""

    def __init__(self) -> None:
        self.entry: CurrentVersion | None = None

    def current(self, tenant_id: str, document_id: str) -> CurrentVersion | None:
        return self.entry


Ingested = tuple[DocumentPlanned, list[WindowExtracted], int]


def _ingest(tmp_path: Path, source: Path, registry: Registry) -> Ingested:
    """Download and extract: the plan, each window's WindowExtracted and the PageBatches sent."""
    settings = _settings(tmp_path)
    store = LocalBlobStore(settings.blob_dir)
    fetcher = Fetcher(
        AddressGuard(), timeout_s=5, attempts=1, max_bytes=2**30, local_roots=[tmp_path]
    )
    outputs = Download(settings, store, fetcher, registry)(
        DocumentSubmitted(tenant_id="t1", document_id="d1", source=str(source))
    )
    (planned,) = [o for o in outputs if isinstance(o, DocumentPlanned)]
    extract = Extract(settings, store)
    events, batches = [], 0
    for task in outputs:
        if isinstance(task, ExtractTask):
            for out in extract(task):
                events += [out] if isinstance(out, WindowExtracted) else []
                batches += isinstance(out, PageBatch)
    return planned, events, batches


def test_windows_whose_text_did_not_change_go_no_further_than_extract(tmp_path: Path) -> None:
    original = markdown(3000)
    registry = Registry()
    planned, events, batches = _ingest(tmp_path, write(tmp_path / "a.md", original), registry)
    assert batches == len(events) == planned.window_count and planned.base_version is None
    registry.entry = CurrentVersion(
        version=planned.version, chunks=7 * len(events), fingerprint=planned.fingerprint,
        windows={e.anchor: WindowRecord(e.digest, 7, (e.anchor,))
                 for e in events if e.anchor and e.digest},
    )  # fmt: skip
    (tmp_path / "v2").mkdir()  # the same file name: it is part of the fingerprint
    planned, events, batches = _ingest(
        tmp_path, write(tmp_path / "v2" / "a.md", edited(original, 0.5)), registry
    )
    assert planned.base_version == registry.entry.version
    unchanged = [e for e in events if e.unchanged]
    assert 1 <= batches <= 2 and len(unchanged) == len(events) - batches
    assert all(e.chunks == 7 for e in unchanged)


def test_an_unchanged_window_counts_as_done_in_every_stage_with_the_chunks_that_stand() -> None:
    now = datetime.now(UTC)
    planned = DocumentPlanned(tenant_id="t1", document_id="d1", stage="download", version="c" * 64,
                              window_count=1, pages=0, bytes=10, content_type=extractors.MARKDOWN,
                              submitted_at=now, base_version="d" * 64)  # fmt: skip
    state = fold(None, planned, now).state
    unchanged = WindowExtracted(tenant_id="t1", document_id="d1", version="c" * 64, window=0,
                                window_count=1, items=1, anchor="0", digest="e" * 32,
                                unchanged=True, chunks=9)  # fmt: skip
    folded = fold(state, unchanged, now)
    assert all(folded.state.done(stage) == {0} for stage in WINDOW_STAGES)
    assert folded.state.expected_chunks == 9 and folded.actions == [CheckCompletion()]
    assert folded.state.edit()["windows_unchanged"] == 1
    assert folded.state.edit()["chunks_reused"] == 9 and folded.state.tokens_spent == 0


def _base(*anchors: str) -> dict[str, WindowRecord]:
    return {a: WindowRecord("0" * 32, 3, (a,)) for a in anchors}


def test_every_object_anchor_of_the_base_is_given_to_exactly_one_new_window() -> None:
    # Unchanged cuts: each window takes its own objects.
    assert reuse_plan(_base("0", "a", "b"), ["0", "a", "b"]) == {0: ["0"], 1: ["a"], 2: ["b"]}
    # An edit moved a cut ("a" became "x"): the window in its place takes its objects.
    assert reuse_plan(_base("0", "a", "b"), ["0", "x", "b"]) == {0: ["0"], 1: ["a"], 2: ["b"]}
    # An edit removed a cut: the window before takes the merged window's objects.
    assert reuse_plan(_base("0", "a", "b"), ["0", "b"]) == {0: ["0", "a"], 1: ["b"]}
    # A window that took objects over keeps them when its anchor goes too.
    base = {"0": WindowRecord("0" * 32, 3, ("0",)), "x": WindowRecord("0" * 32, 3, ("a", "x"))}
    assert reuse_plan(base, ["0", "y"]) == {0: ["0"], 1: ["a", "x"]}
    # An anchor that comes back is its own window's again.
    assert reuse_plan(base, ["0", "y", "a"]) == {0: ["0"], 1: ["x"], 2: ["a"]}
    # The first window gone: the new first window takes it.
    assert reuse_plan(_base("0", "a"), ["z", "a"]) == {0: ["0"], 1: ["a"]}


def test_only_the_window_of_a_changed_pdf_page_has_new_page_bytes(tmp_path: Path) -> None:
    pages = numbered_pages(60, topic="tariff")
    before = extractors.pdf_raw_digests(write_pdf(tmp_path / "a.pdf", pages), WINDOWS_OF_25)
    pages[30] = pages[30].replace("Marker tariff-page-31.", "Marker tariff-page-31 revised.")
    after = extractors.pdf_raw_digests(write_pdf(tmp_path / "b.pdf", pages), WINDOWS_OF_25)
    assert None not in before and [a == b for a, b in zip(before, after, strict=True)] == [
        True, False, True
    ]  # fmt: skip


def test_a_pdf_window_whose_page_bytes_did_not_change_is_not_extracted(tmp_path: Path) -> None:
    class NoParsing:
        def call(self, what: str, *_: object, **__: object) -> object:
            raise AssertionError(f"parsed: {what}")

    settings = _settings(tmp_path)
    task = ExtractTask(tenant_id="t1", document_id="d1", version="a" * 64, window=1,
                       window_count=3, anchor="p26", blob="x" * 64, content_type=extractors.PDF,
                       page_start=26, page_end=50, raw_digest="b" * 32,
                       previous_raw_digest="b" * 32, previous_digest="c" * 32,
                       previous_chunks=40, reuse_from=["p26"])  # fmt: skip
    store = LocalBlobStore(settings.blob_dir)
    store.path(task.blob).parent.mkdir(parents=True, exist_ok=True)
    store.path(task.blob).write_bytes(b"%PDF-1.4")
    (done,) = Extract(settings, store, parser=NoParsing())(task)  # type: ignore[arg-type]
    assert isinstance(done, WindowExtracted) and done.unchanged
    assert (done.chunks, done.digest, done.sources) == (40, "c" * 32, ["p26"])


def test_a_pdf_that_pypdf_cannot_open_gets_no_page_digests_and_is_still_planned(
    tmp_path: Path,
) -> None:
    """pdfium reads more broken files than pypdf: the digests are a shortcut, never a refusal."""
    data = SAMPLE.read_bytes()
    broken = tmp_path / "no-startxref.pdf"
    broken.write_bytes(data[: data.rindex(b"startxref")])
    assert extractors.pdf_raw_digests(broken, [(1, 2), (3, 3)]) == [None, None]
