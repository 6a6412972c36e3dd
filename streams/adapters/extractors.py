"""Reading documents: the real type from the bytes, PDF page counts, and text per window.

PDF text comes from one of two backends behind one signature: pypdfium2 (default: fast, flat
memory, opens lazily) or pypdf (pure Python; opened on a file handle so it seeks instead of
reading the whole file into memory). A page that fails is returned with its error, not raised.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

from streams.adapters.media import sniff_media
from streams.errors import PoisonInput, ResourceLimitExceeded
from streams.messages import Page

PDF = "application/pdf"
TEXT = "text/plain"
MARKDOWN = "text/markdown"
HTML = "text/html"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
PAGED_TYPES = (PDF,)
# Parsed whole (they are compressed or nested); capped so one cannot exhaust memory.
WHOLE_TYPES = (HTML, DOCX)
MAX_WHOLE_BYTES = 50 * 2**20
MAX_INFLATED_BYTES = 200 * 2**20  # what a DOCX's parts may inflate to

_SNIFF_BYTES = 4096


def sniff(path: Path, filename: str | None) -> str:
    """The content type from the file's bytes (the request's claim is never trusted)."""
    with path.open("rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    if head.lstrip(b"\x00\t\r\n ").startswith(b"%PDF-") or b"%PDF-" in head[:1024]:
        return PDF
    if media_type := sniff_media(head):
        return media_type
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                if "word/document.xml" in archive.namelist():
                    return DOCX
        except zipfile.BadZipFile:
            pass
        raise PoisonInput("unsupported document type: a ZIP archive that is not DOCX")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not merely a multi-byte character cut by the sniff window
            raise PoisonInput("unsupported document type: binary content") from None
        text = head[: exc.start].decode("utf-8")
    if "\x00" in text:
        raise PoisonInput("unsupported document type: binary content")
    lowered = text.lstrip().lower()
    if lowered.startswith(("<!doctype html", "<html")) or "<body" in lowered[:2048]:
        return HTML
    if (filename or "").lower().endswith((".md", ".markdown")):
        return MARKDOWN
    return TEXT


# --- PDF -----------------------------------------------------------------------------------
def _open_pdfium(path: Path) -> object:
    import pypdfium2 as pdfium

    try:
        return pdfium.PdfDocument(path)
    except pdfium.PdfiumError as exc:
        message = str(exc)
        if "password" in message.lower():
            raise PoisonInput("encrypted PDF: a password is required to read it") from None
        raise PoisonInput(f"not a readable PDF (truncated or corrupt): {message}") from None


def pdf_page_count(path: Path) -> int:
    doc = _open_pdfium(path)
    try:
        return len(doc)  # type: ignore[arg-type]
    finally:
        doc.close()  # type: ignore[attr-defined]


def _pages_pypdfium2(path: Path, first: int, last: int) -> list[Page]:
    doc = _open_pdfium(path)
    pages = []
    try:
        for number in range(first, last + 1):
            try:
                page = doc[number - 1]  # type: ignore[index]
                textpage = page.get_textpage()
                text = textpage.get_text_range()
                textpage.close()
                page.close()
                pages.append(Page(number=number, text=_clean(text)))
            except Exception as exc:  # one bad page must not sink the window
                pages.append(Page(number=number, text="", error=f"{type(exc).__name__}: {exc}"))
    finally:
        doc.close()  # type: ignore[attr-defined]
    return pages


def _pages_pypdf(path: Path, first: int, last: int) -> list[Page]:
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, PdfReadError

    pages = []
    with path.open("rb") as fh:  # a handle, not a path: pypdf then seeks instead of slurping
        try:
            reader = PdfReader(fh)
            if reader.is_encrypted and not reader.decrypt(""):
                raise PoisonInput("encrypted PDF: a password is required to read it")
            for number in range(first, last + 1):
                try:
                    text = reader.pages[number - 1].extract_text()
                    pages.append(Page(number=number, text=_clean(text)))
                except (PdfReadError, ValueError, KeyError, TypeError) as exc:
                    pages.append(Page(number=number, text="", error=f"{type(exc).__name__}: {exc}"))
        except FileNotDecryptedError:
            raise PoisonInput("encrypted PDF: a password is required to read it") from None
        except PdfReadError as exc:
            raise PoisonInput(f"not a readable PDF (truncated or corrupt): {exc}") from None
    return pages


PDF_BACKENDS: dict[str, Callable[[Path, int, int], list[Page]]] = {
    "pypdfium2": _pages_pypdfium2,
    "pypdf": _pages_pypdf,
}


# --- text, Markdown, HTML, DOCX ------------------------------------------------------------
def text_window(path: Path, window: int, window_bytes: int) -> str:
    """The lines of window ``window``: those starting in [w*W, (w+1)*W) bytes of the file.

    Each line belongs to exactly one window, so windows neither overlap nor lose text, and
    only about ``window_bytes`` are ever read.
    """
    start, end = window * window_bytes, (window + 1) * window_bytes
    with path.open("rb") as fh:
        if start:
            fh.seek(start - 1)
            if fh.read(1) != b"\n":
                fh.readline()  # that line started in the previous window
        data = bytearray()
        while fh.tell() < end:
            line = fh.readline()
            if not line:
                break
            data += line
    return _clean(data.decode("utf-8", errors="replace"))


def html_text(path: Path) -> str:
    from bs4 import BeautifulSoup

    _check_whole_size(path)
    soup = BeautifulSoup(path.read_bytes(), "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    return _clean(soup.get_text("\n"))


def docx_text(path: Path) -> str:
    import docx

    _check_whole_size(path)
    _check_inflated_size(path)
    try:
        document = docx.Document(str(path))
    except Exception as exc:  # python-docx raises assorted errors on broken packages
        raise PoisonInput(f"not a readable DOCX: {exc}") from None
    lines = [p.text for p in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            lines.append("\t".join(cell.text for cell in row.cells))
    return _clean("\n".join(lines))


def _check_inflated_size(path: Path) -> None:
    """A zip bomb is refused from its directory, before anything is inflated."""
    try:
        with zipfile.ZipFile(path) as archive:
            inflated = sum(member.file_size for member in archive.infolist())
    except zipfile.BadZipFile as exc:
        raise PoisonInput(f"not a readable DOCX: {exc}") from None
    if inflated > MAX_INFLATED_BYTES:
        raise ResourceLimitExceeded(
            "inflated_size", f"the DOCX inflates to {inflated} bytes, over {MAX_INFLATED_BYTES}"
        )


def _check_whole_size(path: Path) -> None:
    if path.stat().st_size > MAX_WHOLE_BYTES:
        raise PoisonInput(f"document over {MAX_WHOLE_BYTES} bytes for its type")


def _clean(text: str) -> str:
    # pdfium marks line ends with \r\n and soft hyphens; NULs break Weaviate's text fields.
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "").strip()
