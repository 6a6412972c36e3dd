"""Hostile files for the security tests, built in the test (never committed): bombs, loops,
broken and disguised files."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

from pypdf import PdfReader, PdfWriter

from tests.pdfs import SAMPLE


def _bomb_stream(decoded_mb: int, fill: bytes = b"0 0 m\n") -> bytes:
    """A zlib stream a few hundred KB long that inflates to ``decoded_mb`` MB."""
    compressor = zlib.compressobj(9)
    block = fill * (2**20 // len(fill))
    out = [compressor.compress(block) for _ in range(decoded_mb)]
    out.append(compressor.flush())
    return b"".join(out)


def flate_bomb_pdf(path: Path, decoded_mb: int = 2048) -> Path:
    """One page whose content stream inflates to ``decoded_mb`` MB of drawing operators."""
    stream = _bomb_stream(decoded_mb)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    return _write_pdf(path, objects)


def drawing_heavy_pdf(
    path: Path, drawn_page: int, paths: int, pages: int = 3, in_form: bool = False,
    shown_texts: int = 0,
) -> Path:  # fmt: skip
    """``pages`` pages that each say "Page N of the drawing record." and, on ``drawn_page``, a
    vector drawing of ``paths`` short lines under its text: what a plotted figure looks like to
    a parser (pdfium builds every path object of a page before its text can be read).
    ``in_form``: the drawing is in a form XObject with a caption of its own, "Figure on page
    N.". ``shown_texts``: the drawn page also shows that many one-letter text objects."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>"
        % (b" ".join(b"%d 0 R" % (4 + 2 * n) for n in range(pages)), pages),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    form_number = 4 + 2 * pages  # after every page and its content stream
    for number in range(1, pages + 1):
        content = b"BT /F1 12 Tf 72 720 Td (Page %d of the drawing record.) Tj ET\n" % number
        resources = b"/Font << /F1 3 0 R >>"
        if number == drawn_page:
            drawing = b"".join(
                b"%d %d m %d %d l S\n" % (i % 600, i // 600 % 700, i % 600 + 1, i // 600 % 700 + 1)
                for i in range(paths)
            )
            drawing += b"".join(
                b"BT /F1 1 Tf %d %d Td (x) Tj ET\n" % (i % 600, i // 600 % 700)
                for i in range(shown_texts)
            )
            if in_form:
                caption = b"BT /F1 10 Tf 72 600 Td (Figure on page %d.) Tj ET\n" % number
                content += b"q /Fm1 Do Q\n"
                resources += b" /XObject << /Fm1 %d 0 R >>" % form_number
                form = zlib.compress(caption + drawing, 6)
                form_object = (
                    b"<< /Type /XObject /Subtype /Form /BBox [0 0 612 792] /Length %d "
                    b"/Filter /FlateDecode /Resources << /Font << /F1 3 0 R >> >> >>\nstream\n"
                    % len(form)
                    + form
                    + b"\nendstream"
                )
            else:
                content += drawing
        stream = zlib.compress(content, 6)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources << %s >> >>" % (5 + 2 * (number - 1), resources)
        )
        objects.append(
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream)
            + stream
            + b"\nendstream"
        )
    if in_form:
        objects.append(form_object)
    return _write_pdf(path, objects)


def page_tree_loop_pdf(path: Path) -> Path:
    """A page tree whose Pages node lists itself among its kids (an endless descent)."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>",
    ]
    return _write_pdf(path, objects)


def _write_pdf(path: Path, objects: list[bytes]) -> Path:
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    path.write_bytes(bytes(out))
    return path


def docx_bomb(path: Path, decoded_mb: int = 2048) -> Path:
    """A DOCX whose word/document.xml inflates to ``decoded_mb`` MB (a zip bomb)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("[Content_Types].xml", _CONTENT_TYPES)
        archive.writestr("_rels/.rels", _RELS)
        with archive.open("word/document.xml", "w", force_zip64=True) as member:
            member.write(b'<?xml version="1.0"?><w:document xmlns:w="' + _W + b'">')
            member.write(b"<w:body><w:p><w:r><w:t>")
            block = b"a" * 2**20
            for _ in range(decoded_mb):
                member.write(block)
            member.write(b"</w:t></w:r></w:p></w:body></w:document>")
    return path


def truncated_pdf(path: Path) -> Path:
    data = SAMPLE.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


def encrypted_pdf(path: Path) -> Path:
    writer = PdfWriter(clone_from=PdfReader(SAMPLE))
    writer.encrypt(user_password="secret", owner_password="owner-secret")
    with path.open("wb") as out:
        writer.write(out)
    return path


def zip_not_docx(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("payload.sh", "echo hello\n")
    return path


_W = b"http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_CONTENT_TYPES = (
    '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
    'content-types"><Default Extension="xml" ContentType="application/xml"/><Override '
    'PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.'
    'wordprocessingml.document.main+xml"/></Types>'
)
_RELS = (
    '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/'
    'relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
    'officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/>'
    "</Relationships>"
)
