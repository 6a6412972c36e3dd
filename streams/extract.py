"""extract: ExtractTask -> PageBatch (the text of each page of one window) + WindowExtracted.

A window whose text digest equals the current version's at the same anchor (the task carries
it) goes no further: WindowExtracted says ``unchanged`` and no PageBatch is sent, so it is not
chunked, embedded or indexed again, and its chunks stand.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from streams import metrics
from streams.adapters import extractors, media
from streams.adapters.blobstore import LocalBlobStore
from streams.adapters.media import MEDIA_TYPES
from streams.adapters.sandbox import Sandbox
from streams.errors import PoisonInput, ResourceLimitExceeded
from streams.messages import ExtractTask, Message, Page, PageBatch, WindowExtracted
from streams.pipeline import STAGE_SPECS, Stage
from streams.settings import Settings

if TYPE_CHECKING:
    from streams.adapters.transcribers import Transcriber, Utterance

T = TypeVar("T")

log = logging.getLogger(__name__)
STAGE = STAGE_SPECS["extract"].name


# The open PDF is closed after a window once the child's address space passes this share of its
# cap: room for the next window's growth (a window that still overflows is retried fresh).
PDF_KEEP_SHARE_OF_CAP = 0.9


class Extract:
    def __init__(
        self,
        settings: Settings,
        store: LocalBlobStore,
        parser: Sandbox | None = None,
        transcriber: Transcriber | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        # (path, first, last) -> pages, run in the parser child: importable by name.
        self.pdf_pages: Callable[[Path, int, int], list[extractors.PageText]] = functools.partial(
            extractors.pdf_window,
            settings.pdf_backend,
            keep_mb=settings.pdf_reader_keep_mb,
            # Deep in a long PDF the open document's page list alone is most of the cap.
            close_above_mb=settings.parser_memory_mb * PDF_KEEP_SHARE_OF_CAP,
        )
        # Parsers run in a child process under memory and time limits (a hostile file kills
        # only the child); plain text is read here, in bounded byte windows.
        self.parser = parser or Sandbox.for_parsing(settings)
        # Recordings are transcribed in a child of their own, started on the first window.
        # Only one of the two children lives at a time: a pod's limit is sized for the stage
        # and one child (docs/deploy.md), so switching kinds of input ends the other child.
        self.listener = Sandbox.for_transcribing(settings)
        self._transcriber = transcriber

    def __call__(self, task: ExtractTask) -> list[Message]:
        if not self.store.exists(task.blob):
            raise PoisonInput("the downloaded document is gone from the blob store (deleted?)")
        path = self.store.path(task.blob)
        if task.raw_digest and task.raw_digest == task.previous_raw_digest and task.previous_digest:
            # The pages' bytes are the base window's: so is their text (not extracted again).
            return [
                WindowExtracted(
                    **task.window_identity(),
                    items=task.page_end - task.page_start + 1,
                    digest=task.previous_digest,
                    raw_digest=task.raw_digest,
                    unchanged=True,
                    chunks=task.previous_chunks or 0,
                    sources=task.reuse_from,
                )
            ]
        if task.content_type in MEDIA_TYPES:
            pages = self._transcribe(path, task)
        elif task.content_type == extractors.PDF:
            pages = self._pdf_pages(path, task)
        elif task.content_type == extractors.HTML:
            pages = [Page(number=1, text=self._parse("parsing HTML", extractors.html_text, path))]
        elif task.content_type == extractors.DOCX:
            pages = [Page(number=1, text=self._parse("parsing DOCX", extractors.docx_text, path))]
        elif task.content_type in (extractors.TEXT, extractors.MARKDOWN):
            if task.byte_start is not None and task.byte_end is not None:
                text = extractors.text_span(path, task.byte_start, task.byte_end)
            else:
                text = extractors.text_window(path, task.window, self.settings.text_window_bytes)
            pages = [Page(number=task.page_start, text=text)]
        else:
            raise PoisonInput(f"no extractor for {task.content_type}")
        for page in pages:
            if len(page.text) > self.settings.max_page_chars:
                raise ResourceLimitExceeded(
                    "page_text", f"page {page.number} has {len(page.text)} characters of text, "
                    f"more than MAX_PAGE_CHARS={self.settings.max_page_chars}",
                )  # fmt: skip
        if pages and all(p.error for p in pages):
            raise PoisonInput(
                f"every page of window {task.window} failed to extract; first: {pages[0].error}"
            )
        digest = window_digest(pages)
        unchanged = digest == task.previous_digest
        done = WindowExtracted(
            **task.window_identity(),
            items=len(pages),
            failed_pages=sum(1 for p in pages if p.error),
            digest=digest,
            unchanged=unchanged,
            chunks=(task.previous_chunks or 0) if unchanged else 0,
            sources=task.reuse_from if unchanged else None,
            raw_digest=task.raw_digest,
        )
        if done.unchanged:
            return [done]
        return [PageBatch(**task.carried(), pages=pages), done]

    def _pdf_pages(self, path: Path, task: ExtractTask) -> list[Page]:
        what = f"extracting pages {task.page_start}-{task.page_end}"
        try:
            texts = self._parse(what, self.pdf_pages, path, task.page_start, task.page_end)
        except ResourceLimitExceeded as exc:
            if exc.limit != "memory":
                raise
            # The child may have died of what the PDF it kept open had cached over earlier
            # windows (see extractors.pdf_window), not of this window: once more in a fresh
            # child that opens the file for it alone.
            log.info("%s: over the memory cap with the PDF kept open; once more fresh", what)
            metrics.PARSER_OVER_MEMORY.labels(STAGE, "fresh").inc()
            try:
                texts = self.parser.call(what, self.pdf_pages, path, task.page_start, task.page_end)
            except ResourceLimitExceeded as again:
                if again.limit != "memory":
                    raise
                # Over it fresh too: the window's own pages. A vector drawing of a few hundred
                # thousand paths takes pdfium ~200 MB by itself (docs/benchmarks.md), so read
                # each page alone, and a page still over it without its drawing.
                log.info("%s: over the memory cap fresh; page by page", what)
                metrics.PARSER_OVER_MEMORY.labels(STAGE, "page_by_page").inc()
                texts = self._pdf_pages_one_by_one(path, task)
                if all(t.error for t in texts):
                    raise again from None
        return pages_of(texts)

    def _pdf_pages_one_by_one(self, path: Path, task: ExtractTask) -> list[extractors.PageText]:
        """Each page of the window in a call of its own (the PDF kept open between them, as
        between windows). A page over the memory budget is read again without its drawing, in
        the fresh child the kill leaves, which gives the same text
        (extractors.pdf_page_text_only); a page whose text alone is over the budget is recorded
        as a page error that names the limit."""
        # A one-page window's page was just read alone, in a fresh child.
        read_whole_first = task.page_end > task.page_start
        texts: list[extractors.PageText] = []
        for number in range(task.page_start, task.page_end + 1):
            what = f"extracting page {number}"
            if read_whole_first:
                try:
                    texts += self.parser.call(what, self.pdf_pages, path, number, number)
                    continue
                except ResourceLimitExceeded as exc:
                    if exc.limit != "memory":
                        raise
            log.info("%s: over the memory budget alone; its text without its drawing", what)
            try:
                text = self.parser.call(
                    f"{what} without its drawing", extractors.pdf_page_text_only, path, number
                )
            except ResourceLimitExceeded as exc:
                if exc.limit != "memory":
                    raise
                text = extractors.PageText(number, "", str(exc))
            if text.error:
                log.warning("%s/%s: %s", task.tenant_id, task.document_id, text.error)
            metrics.PARSER_OVER_MEMORY.labels(
                STAGE, "page_lost" if text.error else "text_only"
            ).inc()
            texts.append(text)
        return texts

    def _parse(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        self.listener.close()  # one child at a time (see __init__)
        return self.parser.call(what, fn, *args)

    def _run_transcriber(self, pcm: Path, offset_s: float, what: str) -> list[Utterance]:
        """In the transcriber's child, as parsers run in theirs (its memory limit bounds the
        speech model and the audio it holds, and a stage process never loads a model it may
        not need); a transcriber given to the constructor runs here (tests)."""
        if self._transcriber is not None:
            return self._transcriber.transcribe(pcm, offset_s)
        from streams.adapters.transcribers import transcribe_in_child

        self.parser.close()
        return self.listener.call(what, transcribe_in_child, self.settings, pcm, offset_s)

    def _transcribe(self, path: Path, task: ExtractTask) -> list[Page]:
        """The window's audio, reaching MEDIA_OVERLAP_S into its neighbours so that a word cut
        at an edge is heard whole; a word is kept by the window its start falls in, so each is
        kept exactly once. One transcript segment (utterance) per Page."""
        start, end = task.start_s or 0.0, task.end_s or 0.0
        overlap = self.settings.media_overlap_s
        listen_from = max(0.0, start - overlap)
        # On the blob store's disk, not /tmp: a pod's /tmp may be memory (19 MB per 10 minutes).
        with tempfile.TemporaryDirectory(prefix=".audio-", dir=self.settings.blob_dir) as scratch:
            pcm = Path(scratch) / "window.pcm"
            media.extract_audio(
                path, listen_from, end + overlap, pcm, self.settings.ffmpeg_timeout_s
            )
            utterances = self._run_transcriber(
                pcm, listen_from, f"transcribing {start:.0f}-{end:.0f}s"
            )
        pages = []
        for words in utterances:
            kept = [w for w in words if start <= w.start_s < end]
            if kept:
                pages.append(
                    Page(number=task.page_start, text=" ".join(w.text for w in kept),
                         start_s=kept[0].start_s, end_s=kept[-1].end_s)
                )  # fmt: skip
        return pages


def pages_of(texts: list[extractors.PageText]) -> list[Page]:
    """The parser child's page texts as the messages' pages."""
    return [Page(number=t.number, text=t.text, error=t.error) for t in texts]


def window_digest(pages: list[Page]) -> str:
    """What the chunker is given, digested: equal digests, equal chunks."""
    digest = hashlib.sha256()
    for page in pages:
        head = f"{page.number}\x1f{page.start_s}\x1f{page.end_s}\x1f{page.error or ''}\x1f"
        digest.update(head.encode())
        digest.update(page.text.encode())
        digest.update(b"\x1e")
    return digest.hexdigest()[:32]


def make_stage(settings: Settings) -> Stage[ExtractTask]:
    extract = Extract(settings, LocalBlobStore(settings.blob_dir))
    extract.parser.start()
    return Stage(STAGE_SPECS["extract"], extract, close=extract.parser.close)
