"""extract: ExtractTask -> PageBatch (the text of each page of one window) + WindowExtracted."""

from __future__ import annotations

from streams.adapters import extractors
from streams.adapters.blobstore import LocalBlobStore
from streams.adapters.sandbox import Sandbox
from streams.errors import PoisonInput, ResourceLimitExceeded
from streams.messages import ExtractTask, Message, Page, PageBatch, WindowExtracted
from streams.runner import Stage
from streams.settings import Settings


class Extract:
    def __init__(
        self, settings: Settings, store: LocalBlobStore, parser: Sandbox | None = None
    ) -> None:
        self.settings = settings
        self.store = store
        self.pdf_pages = extractors.PDF_BACKENDS[settings.pdf_backend]
        # Parsers run in a child process under memory and time limits (a hostile file kills
        # only the child); plain text is read here, in bounded byte windows.
        self.parser = parser or Sandbox.for_parsing(settings)

    def __call__(self, task: ExtractTask) -> list[Message]:
        if not self.store.exists(task.blob):
            raise PoisonInput(f"blob {task.blob} is missing from the blob store")
        path = self.store.path(task.blob)
        if task.content_type == extractors.PDF:
            what = f"extracting pages {task.page_start}-{task.page_end}"
            pages = self.parser.call(what, self.pdf_pages, path, task.page_start, task.page_end)
        elif task.content_type == extractors.HTML:
            pages = [
                Page(number=1, text=self.parser.call("parsing HTML", extractors.html_text, path))
            ]
        elif task.content_type == extractors.DOCX:
            pages = [
                Page(number=1, text=self.parser.call("parsing DOCX", extractors.docx_text, path))
            ]
        elif task.content_type in (extractors.TEXT, extractors.MARKDOWN):
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
        batch = PageBatch(**task.carried(), pages=pages)
        done = WindowExtracted(
            **task.window_identity(),
            items=len(pages),
            failed_pages=sum(1 for p in pages if p.error),
        )
        return [batch, done]


def make_stage(settings: Settings) -> Stage[ExtractTask]:
    return Stage("extract", ExtractTask, Extract(settings, LocalBlobStore(settings.blob_dir)))
