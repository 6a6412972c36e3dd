"""Reading documents: the real type from the bytes, PDF page counts, and text per window.

PDF text comes from one of two backends behind one signature: pypdfium2 (default: fast, flat
memory, opens lazily) or pypdf (pure Python; opened on a file handle so it seeks instead of
reading the whole file into memory). A page that fails is returned with its error, not raised.
"""

from __future__ import annotations

import codecs
import hashlib
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from streams.adapters.media import sniff_media
from streams.errors import PoisonInput, ResourceLimitExceeded
from streams.memory import address_space_mb, release_free_memory, resident_mb

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
    wide = _wide_encoding(head)
    # A UTF-16 byte order mark (FF FE) also reads as an MPEG audio frame header.
    if not (wide and _reads_as_text(head, wide)) and (media_type := sniff_media(head)):
        return media_type
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                if "word/document.xml" in archive.namelist():
                    return DOCX
        except zipfile.BadZipFile:
            pass
        raise PoisonInput("unsupported document type: a ZIP archive that is not DOCX")
    if wide is None and (nuls := head.count(0)):
        raise PoisonInput(
            f"not a text document: binary content ({nuls} NUL bytes in its first {len(head)} bytes)"
        )
    # Markers are ASCII: Latin-1 reads them in any 8-bit encoding and never fails.
    lowered = head.decode(wide or "latin-1", errors="replace").lstrip("\ufeff \t\r\n").lower()
    if lowered.startswith(("<!doctype html", "<html")) or "<body" in lowered[:2048]:
        return HTML
    if (filename or "").lower().endswith((".md", ".markdown")):
        return MARKDOWN
    return TEXT


# --- character encodings of text, Markdown and HTML ------------------------------------------
UTF8 = "utf-8"
TEXT_TYPES = (TEXT, MARKDOWN, HTML)
_BOMS = [
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe\x00\x00", "utf-32"),  # before UTF-16's: it starts the same
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
]
_BLOCK_BYTES = 2**20
_SAMPLE_BYTES = 64 * 1024  # what the detector reads, from the first byte that is not UTF-8
# Windows-1252 (a superset of Latin-1's letters) is what most legacy Western text is. On a short
# sample a detector may prefer a neighbour (cp1250 reads "crème" as "crčme") or a CJK codec: it
# is chosen whenever it reads the sample nearly as cleanly as the detector's best (a mess ratio
# within 0.1: text in another script read as cp1252 scores above 1).
_WESTERN = "cp1252"
_WESTERN_MARGIN = 0.1


def _wide_encoding(head: bytes) -> str | None:
    """UTF-16/32 by their byte order mark, or UTF-16 without one (ASCII-range text: every other
    byte NUL); UTF-8 with a BOM too."""
    for bom, codec in _BOMS:
        if head.startswith(bom):
            return codec
    if len(head) >= 64:
        even, odd = head[0::2], head[1::2]
        if even.count(0) == 0 and odd.count(0) >= 0.9 * len(odd):
            return "utf-16-le"
        if odd.count(0) == 0 and even.count(0) >= 0.9 * len(even):
            return "utf-16-be"
    return None


def _reads_as_text(head: bytes, encoding: str) -> bool:
    decoded = head.decode(encoding, errors="replace")
    printable = sum(1 for c in decoded if c.isprintable() or c in "\t\r\n\ufeff")
    return printable >= 0.95 * len(decoded)


def text_encoding(path: Path, html: bool = False) -> str:
    """The character encoding of a text, Markdown or HTML file, as a Python codec name.

    In order: a byte order mark; UTF-8 if the whole file is valid UTF-8 (legacy 8-bit text
    almost never is); for HTML, the charset it declares, if that reads it; else what
    charset-normalizer detects from 64 KB starting at the first byte that is not UTF-8, with
    Windows-1252 preferred when it reads that as cleanly. Reads the file in 1 MB blocks.
    Refuses what no encoding reads as text (binary content).
    """
    from charset_normalizer import from_bytes
    from charset_normalizer.md import mess_ratio

    with path.open("rb") as fh:
        head = fh.read(_SNIFF_BYTES)
        if wide := _wide_encoding(head):
            return wide
        fh.seek(0)
        decoder = codecs.getincrementaldecoder(UTF8)()
        offset, bad = 0, None
        while block := fh.read(_BLOCK_BYTES):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                bad = offset + exc.start
                break
            offset += len(block)
        if bad is None:  # valid UTF-8 throughout (maybe cut inside its last character)
            return UTF8
        fh.seek(max(0, bad - 1024))
        sample = fh.read(_SAMPLE_BYTES)
    if html and (declared := _declared_charset(head)):
        try:
            sample.decode(declared)
            return declared
        except (UnicodeDecodeError, LookupError):
            pass  # a wrong or unknown declaration: detect instead
    best = from_bytes(sample).best()
    try:
        western = mess_ratio(sample.decode(_WESTERN), 1.0)
    except UnicodeDecodeError:
        western = None
    if western is not None and western <= (best.chaos if best else 0.2) + _WESTERN_MARGIN:
        return _WESTERN
    if best is None:
        raise PoisonInput("not a text document: no character encoding reads it as text")
    return str(best.encoding)


def _declared_charset(head: bytes) -> str | None:
    from bs4.dammit import EncodingDetector

    declared = EncodingDetector.find_declared_encoding(head, is_html=True)
    if not declared:
        return None
    try:
        return codecs.lookup(declared).name
    except LookupError:
        return None


def transcode_to_utf8(path: Path, encoding: str) -> None:
    """Rewrite the file as UTF-8 (without a BOM), in blocks; atomic (a rename)."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    converted = path.with_name(f"{path.name}.utf-8")
    with path.open("rb") as source, converted.open("wb") as out:
        while block := source.read(_BLOCK_BYTES):
            out.write(decoder.decode(block).encode(UTF8))
        out.write(decoder.decode(b"", final=True).encode(UTF8))
    converted.replace(path)


# --- PDF -----------------------------------------------------------------------------------
def _open_pdfium(path: Path) -> Any:
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
        return len(doc)
    finally:
        doc.close()


def pdf_raw_digests(path: Path, windows: list[tuple[int, int]]) -> list[str | None]:
    """A digest per window of what its pages' text is made from, read without extracting it:
    each page's content stream bytes, and its fonts (their direct entries and ToUnicode maps).
    Equal digests, equal text; so a window of an edited PDF whose pages' bytes did not change
    needs no text extraction. None for a window whose bytes could not be read (it is then
    extracted). One pass of pypdf over the page tree: bounded by PDF_RAW_DIGEST_MAX_PAGES.
    A file pypdf cannot open (pdfium may still read it) gets no digests."""
    try:
        reader = _open_pypdf(path)
    except PoisonInput:
        return [None] * len(windows)
    try:
        digests: list[str | None] = []
        for first, last in windows:
            digest = hashlib.sha256()
            try:
                for number in range(first, last + 1):
                    for part in _page_bytes(reader.pages[number - 1]):
                        digest.update(part)
                    digest.update(b"\x1e")
                digests.append(digest.hexdigest()[:32])
            except Exception:  # an unusual page: the window is extracted instead
                digests.append(None)
        return digests
    finally:
        reader.stream.close()


def _page_bytes(page: Any) -> Iterator[bytes]:
    from pypdf.generic import IndirectObject

    contents = page.get("/Contents")
    streams = contents.get_object() if contents is not None else []
    for stream in streams if isinstance(streams, list) else [streams]:
        yield stream.get_object()._data or b""
    resources = page.get("/Resources")
    fonts = resources.get_object().get("/Font") if resources is not None else None
    for name, ref in sorted((fonts.get_object() if fonts is not None else {}).items()):
        font = ref.get_object()
        direct = sorted((k, repr(v)) for k, v in font.items() if not isinstance(v, IndirectObject))
        yield f"{name}{direct}".encode()
        if (to_unicode := font.get("/ToUnicode")) is not None:
            yield to_unicode.get_object()._data or b""


class PageText(NamedTuple):
    """A page's text as the parser child returns it: plain data, so that the child imports
    neither pydantic nor the message models (~17 MB of its resident memory); the stage makes a
    ``messages.Page`` of it."""

    number: int
    text: str
    error: str | None = None  # why the page has no text, if it failed


def _pages_pypdfium2(doc: Any, first: int, last: int) -> list[PageText]:
    pages = []
    for number in range(first, last + 1):
        try:
            page = doc[number - 1]
            textpage = page.get_textpage()
            text = textpage.get_text_range()
            textpage.close()
            page.close()
            pages.append(PageText(number, _clean(text)))
        except Exception as exc:  # one bad page must not sink the window
            pages.append(PageText(number, "", f"{type(exc).__name__}: {exc}"))
    return pages


# pypdf's cap on what one stream may decode to, set by cap_pypdf_streams (the parser sandbox's
# child does) and not yet applied: it is, when pypdf is first used.
_pypdf_cap_pending: int | None = None


def cap_pypdf_streams(decoded_bytes: int) -> None:
    """Cap what one pypdf stream may decode to (its defaults are 75 MB each). Applied on pypdf's
    first use, not here: importing pypdf brings PIL, fontTools and cryptography (~17 MB), which
    a parser child that reads with pdfium never needs."""
    global _pypdf_cap_pending
    _pypdf_cap_pending = decoded_bytes


def _capped_pypdf() -> None:
    global _pypdf_cap_pending
    if (cap := _pypdf_cap_pending) is None:
        return
    import pypdf

    pypdf.overwrite_configuration(
        maximum_declared_stream_length=cap,
        array_based_stream_maximum_output_length=cap,
        jbig2_maximum_output_length=cap,
        lzw_maximum_output_length=cap,
        run_length_maximum_output_length=cap,
        zlib_maximum_output_length=cap,
        brotli_maximum_output_length=cap,
        image_maximum_buffer_size=cap,
    )
    _pypdf_cap_pending = None


def _open_pypdf(path: Path) -> Any:
    _capped_pypdf()  # every pypdf reader is made here
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, PdfReadError

    handle = path.open("rb")  # a handle, not a path: pypdf then seeks instead of slurping
    try:
        try:
            reader = PdfReader(handle)
            if reader.is_encrypted and not reader.decrypt(""):
                raise PoisonInput("encrypted PDF: a password is required to read it")
            len(reader.pages)  # the page tree, walked once per open
        except FileNotDecryptedError:
            raise PoisonInput("encrypted PDF: a password is required to read it") from None
        except PdfReadError as exc:
            raise PoisonInput(f"not a readable PDF (truncated or corrupt): {exc}") from None
    except BaseException:
        handle.close()  # kept open only with the reader that needs it
        raise
    return reader


def _pages_pypdf(reader: Any, first: int, last: int) -> list[PageText]:
    from pypdf.errors import PyPdfError

    pages = []
    for number in range(first, last + 1):
        try:
            text = reader.pages[number - 1].extract_text()
            pages.append(PageText(number, _clean(text)))
        # PyPdfError includes LimitReachedError: a page over pypdf's own parsing caps (a
        # vector map's content stream) is that page's error, not the window's.
        except (PyPdfError, ValueError, KeyError, TypeError) as exc:
            pages.append(PageText(number, "", f"{type(exc).__name__}: {exc}"))
    return pages


def _close_pypdf(reader: Any) -> None:
    reader.stream.close()


@dataclass(frozen=True)
class PdfBackend:
    open: Callable[[Path], Any]
    pages: Callable[[Any, int, int], list[PageText]]
    close: Callable[[Any], None]


PDF_BACKENDS: dict[str, PdfBackend] = {
    "pypdfium2": PdfBackend(_open_pdfium, _pages_pypdfium2, lambda doc: doc.close()),
    "pypdf": PdfBackend(_open_pypdf, _pages_pypdf, _close_pypdf),
}


@dataclass
class _OpenPdf:
    key: tuple[str, str, int, int]  # backend, path, inode, mtime: a replaced file is reopened
    document: Any
    # The process after the first window read from it: the document's structure is in by
    # then (cross-reference table; pdfium's page list, which it fills up to the page asked
    # for). Growth past it is caches, which keep_mb bounds.
    resident_base_mb: float | None = None


_open_pdf: _OpenPdf | None = None  # one per process (the parser child): the last one read


def pdf_window(backend: str, path: Path, first: int, last: int, keep_mb: int = 0,
               close_above_mb: float = float("inf")) -> list[PageText]:  # fmt: skip
    """The text of pages ``first``..``last`` (1-based, inclusive).

    The document stays open for the next window of the same file: reopening a 1 GB PDF
    re-reads its cross-reference table, walks its page tree again up to the window (pdfium
    parses every page dictionary before it: quadratic over the document) and re-parses its
    fonts. Both libraries also cache what they parse (fonts, shared resources) for as long as
    a document is open, so once those caches have grown ``keep_mb`` past the memory it held
    after its first window, it is closed and the freed heap given back to the system.
    ``keep_mb=0`` closes it after every window. It is closed too once the process's address
    space passes ``close_above_mb``: the caches' base grows with how deep in the page tree the
    document was opened, so a fixed ``keep_mb`` over it can still reach the child's cap.
    """
    global _open_pdf
    kind = PDF_BACKENDS[backend]
    stat = path.stat()
    key = (backend, str(path), stat.st_ino, stat.st_mtime_ns)
    if _open_pdf is not None and _open_pdf.key != key:
        close_open_pdf()
    if _open_pdf is None:
        _open_pdf = _OpenPdf(key, kind.open(path))
    try:
        return kind.pages(_open_pdf.document, first, last)
    finally:
        now = resident_mb()
        if _open_pdf.resident_base_mb is None:
            _open_pdf.resident_base_mb = now
        if not now - _open_pdf.resident_base_mb < keep_mb or address_space_mb() > close_above_mb:
            close_open_pdf()  # (NaN without /proc: closed)


# What a page's text depends on: text objects, their state, the graphics state stack and
# transforms that place them, form XObjects (which may hold text) and marked content (which may
# carry /ActualText). Paths, clips, shadings, colours and images are left out.
_TEXT_OPERATORS = (
    "BT ET Tj TJ ' \" Tf Td TD Tm T* Tc Tw Tz TL Ts Tr "  # text objects and their state
    "q Q cm gs Do BMC BDC EMC"  # where text lands, which font gs sets, forms, marked content
)


def pdf_page_text_only(path: Path, number: int) -> PageText:
    """The text of page ``number``, read without its drawing.

    For a page whose vector drawing is too big to parse: pdfium builds every path object of a
    page before its text can be read (~550 bytes each; a plotted figure of 363,537 paths needs
    ~200 MB). Here pdfium copies the page alone into a new document, which copies its objects
    without parsing its content; qpdf (pikepdf) then keeps only the text operators of its
    content streams and of its form XObjects', filtering as it parses so that none of the
    dropped paths is held; pdfium reads the text of what is left, as the pypdfium2 backend
    reads a whole page (the pypdf backend's text may differ). What it keeps still costs memory:
    a drawing made of form placements (``q cm /M0 Do Q`` per marker) keeps every one of them.
    Text in a Type 3 font's glyph drawing or in an annotation is not read either way. An error
    is the page's (as in ``_pages_pypdfium2``); running out of memory is the caller's.
    """
    try:
        return PageText(number, _text_without_drawing(path, number))
    except MemoryError:
        raise
    except Exception as exc:  # a page qpdf or pdfium cannot read this way: that page's error
        return PageText(number, "", f"{type(exc).__name__}: {exc}")


def _text_without_drawing(path: Path, number: int) -> str:
    import io
    import warnings

    import pikepdf
    import pypdfium2 as pdfium

    copy = io.BytesIO()
    source = _open_pdfium(path)
    try:
        alone = pdfium.PdfDocument.new()
        try:
            alone.import_pages(source, [number - 1])
            alone.save(copy)
        finally:
            alone.close()
    finally:
        source.close()
    filtered = io.BytesIO()
    with pikepdf.open(copy) as pdf, warnings.catch_warnings():
        # A form field's widget copied without its form: nothing of the page's text.
        warnings.simplefilter("ignore", pikepdf.PageCopyWarning)
        page = pdf.pages[0]
        page.Contents = pdf.make_stream(_text_operators_of(page))
        _keep_text_of_forms(page.obj.get("/Resources"))
        pdf.save(filtered)
    del copy
    document = pdfium.PdfDocument(filtered.getvalue())
    try:
        textpage = document[0].get_textpage()
        return _clean(textpage.get_text_range())
    finally:
        document.close()


def _text_operators_of(content: Any) -> bytes:
    import pikepdf

    return pikepdf.unparse_content_stream(pikepdf.parse_content_stream(content, _TEXT_OPERATORS))


def _keep_text_of_forms(resources: Any) -> None:
    """The same filter on every form XObject these resources name, and on theirs: each form
    once, however deep or shared (a loop of forms ends)."""
    import pikepdf

    seen: set[tuple[int, int]] = set()
    pending = [resources]
    while pending:
        held = pending.pop()
        xobjects = held.get("/XObject") if isinstance(held, pikepdf.Dictionary) else None
        if not isinstance(xobjects, pikepdf.Dictionary):
            continue
        for _, xobject in xobjects.items():
            if not isinstance(xobject, pikepdf.Stream) or xobject.get("/Subtype") != "/Form":
                continue
            if xobject.objgen in seen:
                continue
            seen.add(xobject.objgen)
            xobject.write(_text_operators_of(xobject))
            pending.append(xobject.get("/Resources"))


def close_open_pdf() -> None:
    global _open_pdf
    if _open_pdf is not None:
        closing, _open_pdf = _open_pdf, None
        PDF_BACKENDS[closing.key[0]].close(closing.document)
        release_free_memory()


# --- text, Markdown, HTML, DOCX ------------------------------------------------------------
_CUT_HASH_BYTES = 64  # how much of a line decides whether a window ends before it


@dataclass(frozen=True)
class TextSpan:
    """A window of a text file: the whole lines in [start, end) bytes, and its anchor."""

    start: int
    end: int
    anchor: str


def text_spans(path: Path, target_bytes: int) -> list[TextSpan]:
    """Content-defined windows of about ``target_bytes`` (between half and twice that).

    A window ends before a line chosen by the line's own bytes, never by an absolute offset:
    an edit moves the cut points only near itself, so the windows before and after it keep
    their text. A line is chosen by the hash of its start (an edit inside a paragraph leaves
    it) with a chance in proportion to its length (so windows are about the target size
    whatever the lines' lengths). The anchor names the cut line (that hash and how many earlier
    cuts had the same), so it survives edits elsewhere. Reads the file once, a line at a time.
    """
    least, most = target_bytes // 2, target_bytes * 2
    span = target_bytes - least
    spans: list[TextSpan] = []
    seen: dict[int, int] = {}  # cut-line hash -> cuts with it so far
    start, anchor, offset = 0, "0", 0
    with path.open("rb") as fh:
        for line in fh:
            size = offset - start
            if size >= least:
                head = line[:_CUT_HASH_BYTES]
                digest = int.from_bytes(hashlib.blake2b(head, digest_size=8).digest(), "big")
                # P(cut) = len(line) / span: the expected window is `least + span`, whatever
                # the lines' lengths.
                if size >= most or digest * span < len(line) << 64:
                    spans.append(TextSpan(start, offset, anchor))
                    n = seen.get(digest, 0)
                    seen[digest] = n + 1
                    start, anchor = offset, f"{digest:016x}.{n}"
            offset += len(line)
    if offset > start or not spans:
        spans.append(TextSpan(start, offset, anchor))
    return spans


def text_span(path: Path, start: int, end: int) -> str:
    """The text of one window (see text_spans): only its own bytes are read."""
    with path.open("rb") as fh:
        fh.seek(start)
        data = fh.read(end - start)
    return _clean(data.decode("utf-8", errors="replace"))


def text_window(path: Path, window: int, window_bytes: int) -> str:
    """The lines starting in [w*W, (w+1)*W) bytes of the file: windows planned before
    content-defined ones (an ExtractTask without a byte range, still in flight at an upgrade)."""
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
    # The download stage stored it as UTF-8 whatever it declares (text_encoding).
    soup = BeautifulSoup(path.read_bytes(), "html.parser", from_encoding=UTF8)
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
