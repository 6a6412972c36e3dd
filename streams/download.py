"""download: DocumentSubmitted -> the blob store, then one ExtractTask per window + DocumentPlanned.

Windows are page ranges for PDFs, time ranges for recordings, content-defined byte ranges (whole
lines) for plain text and Markdown, and a single window for HTML and DOCX (parsed whole, under a
size cap). Each has an anchor that survives edits elsewhere in the document.

A changed document reuses its current version: each window whose anchor the current version has
carries that window's text digest, so extract can stop an unchanged window at once, and the
index reuses the objects of unchanged chunks (streams/index.py). Reuse needs the same
fingerprint: chunking, embedding model, metadata and file name as the current version.

Content whose sha256 is already the document's current, indexed version is not planned again:
DocumentPlanned says ``unchanged`` and no task is sent, so nothing is re-extracted or re-embedded.
Delete requests share the ingest topic; the tracker carries them out, so they pass by here.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import orjson

from streams.adapters import extractors, media
from streams.adapters.blobstore import LocalBlobStore
from streams.adapters.fetch import AddressGuard, Fetched, Fetcher
from streams.adapters.media import MEDIA_TYPES
from streams.adapters.sandbox import Sandbox
from streams.adapters.weaviate_store import ChunkIndex, CurrentVersion, WindowRecord
from streams.errors import DownstreamUnavailable, PoisonInput, ResourceLimitExceeded, TransientError
from streams.messages import (
    DeleteRequested,
    DocumentPlanned,
    DocumentSubmitted,
    ExtractTask,
    IngestRequest,
    Message,
)
from streams.pipeline import STAGE_SPECS, Stage
from streams.settings import ParseSettings, Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Window:
    first: int  # 1-based page (1 for text and HTML, window number + 1 for recordings)
    last: int
    anchor: str
    start_s: float | None = None  # recordings: the window's time range
    end_s: float | None = None
    byte_start: int | None = None  # text: the window's lines
    byte_end: int | None = None


def plan_windows(content_type: str, pages: int, path: Path | None, settings: ParseSettings,
                 pages_per_window: int, duration_s: float = 0.0) -> list[Window]:  # fmt: skip
    if content_type in MEDIA_TYPES:
        span = settings.media_window_s
        count = max(1, math.ceil(duration_s / span))
        return [
            Window(w + 1, w + 1, f"t{w * span:g}", w * span, min((w + 1) * span, duration_s))
            for w in range(count)
        ]
    if content_type in extractors.PAGED_TYPES:
        count = math.ceil(pages / pages_per_window)
        return [
            Window(first, min(first + pages_per_window - 1, pages), f"p{first}")
            for first in (w * pages_per_window + 1 for w in range(count))
        ]
    if content_type in extractors.WHOLE_TYPES or path is None:
        return [Window(1, 1, "whole")]
    # Text has no pages: every chunk is on "page" 1, so an edit renumbers nothing.
    return [
        Window(1, 1, span.anchor, byte_start=span.start, byte_end=span.end)
        for span in extractors.text_spans(path, settings.text_window_bytes)
    ]


def fingerprint(settings: Settings, request: DocumentSubmitted, content_type: str) -> str:
    """Everything besides the text that shapes a window's chunks, vectors and objects: a
    version may reuse another's objects only when this is the same."""
    shape = {
        # "tokens-1": the splitter of streams/splitter.py (a new splitter moves chunk ends).
        "chunk": [settings.chunk_max_tokens, settings.chunk_overlap_tokens, "tokens-1"],
        "embed": [settings.embedder, settings.openai_model, settings.openai_dimensions],
        "windows": [
            settings.text_window_bytes,
            settings.media_window_s,
            request.pages_per_window or settings.pages_per_window,
        ],
        "object": [request.metadata, request.filename or _filename(request.source), content_type],
    }
    return hashlib.sha256(orjson.dumps(shape, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def reuse_plan(base: Mapping[str, WindowRecord], anchors: list[str]) -> dict[int, list[str]]:
    """Which new window (by number) may reuse the objects under each anchor of the base version.

    Each object anchor is given to exactly one window, so no object is claimed twice: to the
    window at that anchor if the new version has one; else (its window is gone, an edit moved
    a cut) to the window that took its place, the one after the last window still there when
    that one is new, or that last window itself. ``base`` is in window order.
    """
    position = {anchor: i for i, anchor in enumerate(anchors)}
    given: dict[int, list[str]] = {}
    kept: int | None = None  # the new window of the last base window still there
    for anchor, record in base.items():
        if anchor in position:
            owner = kept = position[anchor]
        elif kept is None:
            owner = 0
        else:
            after = kept + 1
            owner = after if after < len(anchors) and anchors[after] not in base else kept
        for source in record.sources or (anchor,):
            given.setdefault(position.get(source, owner), []).append(source)
    return {window: sorted(set(sources)) for window, sources in given.items()}


class CurrentVersions(Protocol):
    def current(self, tenant_id: str, document_id: str) -> CurrentVersion | None: ...


class Download:
    def __init__(
        self,
        settings: Settings,
        store: LocalBlobStore,
        fetcher: Fetcher,
        versions: CurrentVersions,
        parser: Sandbox | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.fetcher = fetcher
        self.versions = versions
        self.parser = parser or Sandbox.for_parsing(settings)

    def __call__(self, request: IngestRequest) -> list[Message]:
        if isinstance(request, DeleteRequested):
            return []
        fetched, blob, content_type, encoding = self._fetch(request)
        current = self._current_version(request)
        if current is not None and current.version == fetched.sha256:
            return [self._planned(request, fetched, blob, content_type, 0, 0, unchanged=True,
                                  encoding=encoding)]  # fmt: skip
        pages, windows = self._plan(request, self.store.path(blob), content_type)
        shape = fingerprint(self.settings, request, content_type)
        # Reuse only a current version built the same way (older ones have no window digests).
        base = current if current is not None and current.fingerprint == shape else None
        filename = request.filename or _filename(request.source)
        given = reuse_plan(base.windows, [w.anchor for w in windows]) if base else {}
        raw = self._raw_digests(content_type, self.store.path(blob), pages, windows)
        tasks: list[Message] = []
        for i, w in enumerate(windows):
            reuse_from = given.get(i, [])
            previous = base.windows.get(w.anchor) if base else None
            # Stopped at extract when its text is unchanged only if it takes over exactly its
            # own objects (not those of a window that is gone, which it must drop or reuse).
            same = previous is not None and set(previous.sources or (w.anchor,)) == set(reuse_from)
            tasks.append(
                ExtractTask(
                    tenant_id=request.tenant_id,
                    document_id=request.document_id,
                    version=fetched.sha256,
                    window=i,
                    window_count=len(windows),
                    anchor=w.anchor,
                    blob=blob,
                    content_type=content_type,
                    page_start=w.first,
                    page_end=w.last,
                    start_s=w.start_s,
                    end_s=w.end_s,
                    byte_start=w.byte_start,
                    byte_end=w.byte_end,
                    filename=filename,
                    metadata=request.metadata,
                    fingerprint=shape,
                    base_version=base.version if base and reuse_from else None,
                    reuse_from=reuse_from,
                    previous_digest=previous.digest if previous and same else None,
                    previous_chunks=previous.chunks if previous and same else None,
                    raw_digest=raw[i],
                    previous_raw_digest=previous.raw_digest if previous and same else None,
                )
            )
        planned = self._planned(
            request, fetched, blob, content_type, len(windows), pages,
            base_version=base.version if base else None, fingerprint=shape, encoding=encoding,
        )  # fmt: skip
        return [*tasks, planned]

    def _fetch(self, request: DocumentSubmitted) -> tuple[Fetched, str, str, str | None]:
        """The document downloaded (resumed where an earlier try stopped) into the blob store:
        what was fetched, its blob, its sniffed content type and, for text, the character
        encoding it came in. Text is stored as UTF-8, so every later stage reads UTF-8 (the
        version stays the sha256 of the bytes as fetched)."""
        partial = self.store.partial(request.tenant_id, request.document_id)
        fetched = self.fetcher.fetch(request.source, partial)
        blob = self.store.commit(partial, request.tenant_id, request.document_id, fetched.sha256)
        if fetched.size == 0:
            raise PoisonInput("empty document (0 bytes)")
        content_type = extractors.sniff(self.store.path(blob), request.filename)
        claimed = _claimed_type(request)
        if claimed and claimed != content_type:
            # Typically an error or login page served instead of the document.
            raise PoisonInput(f"the request says {claimed} but the bytes are {content_type}")
        encoding = None
        if content_type in extractors.TEXT_TYPES:
            path = self.store.path(blob)
            encoding = extractors.text_encoding(path, html=content_type == extractors.HTML)
            if encoding != extractors.UTF8:
                extractors.transcode_to_utf8(path, encoding)
        return fetched, blob, content_type, encoding

    def _plan(
        self, request: DocumentSubmitted, path: Path, content_type: str
    ) -> tuple[int, list[Window]]:
        """The document's page count (PDFs) and its windows."""
        pages, duration = 0, 0.0
        if content_type in MEDIA_TYPES:
            duration = self._duration(path)
        if content_type == extractors.PDF:
            pages = self.parser.call("counting the PDF's pages", extractors.pdf_page_count, path)
            if pages > self.settings.max_pages:
                raise ResourceLimitExceeded(
                    "pages", f"{pages} pages, more than MAX_PAGES={self.settings.max_pages}"
                )
        per_window = request.pages_per_window or self.settings.pages_per_window
        return pages, plan_windows(content_type, pages, path, self.settings, per_window, duration)

    def _raw_digests(
        self, content_type: str, path: Path, pages: int, windows: list[Window]
    ) -> list[str | None]:
        """PDF windows' page-bytes digests (see extractors.pdf_raw_digests), if not too long."""
        if (
            content_type != extractors.PDF
            or not 0 < pages <= self.settings.pdf_raw_digest_max_pages
        ):
            return [None] * len(windows)
        spans = [(w.first, w.last) for w in windows]
        try:
            return self.parser.call(
                "reading the PDF's page bytes", extractors.pdf_raw_digests, path, spans
            )
        except ResourceLimitExceeded:  # only a shortcut: the windows are extracted instead
            return [None] * len(windows)

    @staticmethod
    def _planned(
        request: DocumentSubmitted, fetched: Fetched, blob: str, content_type: str,
        window_count: int, pages: int, unchanged: bool = False, base_version: str | None = None,
        fingerprint: str | None = None, encoding: str | None = None,
    ) -> DocumentPlanned:  # fmt: skip
        return DocumentPlanned(
            tenant_id=request.tenant_id,
            document_id=request.document_id,
            stage="download",
            version=fetched.sha256,
            window_count=window_count,
            pages=pages,
            bytes=fetched.size,
            content_type=content_type,
            blob=blob,
            submitted_at=request.submitted_at,
            unchanged=unchanged,
            base_version=base_version,
            fingerprint=fingerprint,
            encoding=encoding,
        )

    def _duration(self, path: Path) -> float:
        info = media.probe(path, self.settings.ffmpeg_timeout_s)
        if not info.has_audio:
            raise PoisonInput("a recording without an audio stream: nothing to transcribe")
        if info.duration_s > self.settings.max_media_s:
            raise ResourceLimitExceeded(
                "duration",
                f"{info.duration_s:.0f}s, more than MAX_MEDIA_S={self.settings.max_media_s:g}",
            )
        return info.duration_s

    def _current_version(self, request: DocumentSubmitted) -> CurrentVersion | None:
        # Fail open: while Weaviate is down, documents are still downloaded and extracted (and
        # wait at the index stage); an unchanged one is then processed again, not held up.
        try:
            return self.versions.current(request.tenant_id, request.document_id)
        except (DownstreamUnavailable, TransientError) as exc:
            log.warning(
                "cannot tell whether %s is unchanged (%s): processing it", request.document_id, exc
            )
            return None


def _claimed_type(request: DocumentSubmitted) -> str | None:
    """The type the caller claims, from content_type or the file name's extension (PDF only:
    other text types are too loosely labelled to refuse on)."""
    hint = (request.content_type or "").split(";")[0].strip().lower()
    name = (request.filename or request.source.split("?", 1)[0]).lower()
    if hint == extractors.PDF or name.endswith(".pdf"):
        return extractors.PDF
    return None


def _filename(source: str) -> str | None:
    name = source.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
    return name[:512] or None


def make_stage(settings: Settings) -> Stage[IngestRequest]:
    fetcher = Fetcher(
        AddressGuard(settings.fetch_allowlist, settings.outbound_ports),
        timeout_s=settings.fetch_timeout_s,
        attempts=settings.fetch_attempts,
        max_bytes=settings.max_download_bytes,
        local_roots=settings.local_source_roots,
        min_bytes_per_s=settings.fetch_min_bytes_per_s,
    )
    versions = ChunkIndex(settings)
    versions.prepare()
    handler = Download(settings, LocalBlobStore(settings.blob_dir), fetcher, versions)
    handler.parser.start()

    def close() -> None:
        handler.parser.close()
        fetcher.close()
        versions.close()

    return Stage(STAGE_SPECS["download"], handler, close=close)
