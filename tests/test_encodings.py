"""Legacy text: the character encoding is detected at download, the blob is stored as UTF-8, the
status says what it came in; only what is not text is refused, with a reason that says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.adapters import extractors
from streams.adapters.blobstore import LocalBlobStore
from streams.adapters.fetch import AddressGuard, Fetcher
from streams.download import Download
from streams.errors import PoisonInput
from streams.extract import Extract
from streams.messages import DocumentPlanned, DocumentSubmitted, ExtractTask, PageBatch
from streams.settings import Settings

FRENCH = (
    "Le capitaine du port allume quarante-deux lanternes bleues sur la jetée nord.\n"
    "À côté du café, la façade de l'hôtel est très appréciée des marins grecs.\n"
)
WINDOWS = "Il a dit \u201cvoilà\u201d \u2014 le café coûte 5 \u20ac près de l'écluse.\n"
RUSSIAN = "Капитан порта каждую ночь зажигает сорок два синих фонаря на северном пирсе.\n"
JAPANESE = "東京の港では毎晩四十二個の青い提灯が灯されます。港長は灯台守です。\n"


class NothingIndexedYet:
    def current(self, tenant_id: str, document_id: str) -> None:
        return None


def _download_and_extract(tmp_path: Path, source: Path) -> tuple[DocumentPlanned, str]:
    """The stage outputs for one local file: its DocumentPlanned, and the text extract reads
    from the stored blob."""
    settings = Settings(blob_dir=tmp_path / "blobs", local_source_roots=[tmp_path])
    store = LocalBlobStore(settings.blob_dir)
    fetcher = Fetcher(AddressGuard(), timeout_s=5, attempts=1, max_bytes=2**30,
                      local_roots=[tmp_path])  # fmt: skip
    outputs = Download(settings, store, fetcher, NothingIndexedYet())(
        DocumentSubmitted(tenant_id="t1", document_id="d1", source=str(source))
    )
    (planned,) = [o for o in outputs if isinstance(o, DocumentPlanned)]
    extract = Extract(settings, store)
    text = ""
    for task in (o for o in outputs if isinstance(o, ExtractTask)):
        for out in extract(task):
            if isinstance(out, PageBatch):
                text += "\n".join(p.text for p in out.pages)
    return planned, text


@pytest.mark.parametrize(
    ("name", "data", "encodings"),
    [
        ("latin_1.txt", FRENCH.encode("latin-1"), {"cp1252", "iso8859-1"}),
        ("windows_1252.md", (FRENCH + WINDOWS).encode("cp1252"), {"cp1252"}),
        ("utf_16_with_bom.txt", FRENCH.encode("utf-16"), {"utf-16"}),
        ("utf_16_big_endian_bom.md", b"\xfe\xff" + FRENCH.encode("utf-16-be"), {"utf-16"}),
        ("utf_16_le_without_bom.txt", FRENCH.encode("utf-16-le"), {"utf-16-le"}),
        ("utf_8_with_bom.txt", FRENCH.encode("utf-8-sig"), {"utf-8-sig"}),
        ("windows_1251.txt", (RUSSIAN * 3).encode("cp1251"), {"cp1251"}),
        ("shift_jis.txt", (JAPANESE * 3).encode("shift_jis"), {"cp932", "shift_jis"}),
    ],
)
def test_legacy_text_is_decoded_and_stored_as_utf8(
    tmp_path: Path, name: str, data: bytes, encodings: set[str]
) -> None:
    source = tmp_path / name
    source.write_bytes(data)
    planned, text = _download_and_extract(tmp_path, source)
    assert planned.encoding in encodings
    expected = data.decode(planned.encoding or "").lstrip("\ufeff").strip()
    assert text == expected.replace("\n\n", "\n")
    blob = LocalBlobStore(tmp_path / "blobs").path(planned.blob or "")
    assert blob.read_bytes().decode("utf-8").strip() == expected  # stored as UTF-8, no BOM
    assert planned.version != ""  # the version is the sha256 of the bytes as fetched


def test_utf8_text_is_stored_untouched(tmp_path: Path) -> None:
    source = tmp_path / "notes.txt"
    source.write_text(FRENCH + RUSSIAN, encoding="utf-8")
    planned, text = _download_and_extract(tmp_path, source)
    assert planned.encoding == "utf-8" and RUSSIAN.strip() in text
    blob = LocalBlobStore(tmp_path / "blobs").path(planned.blob or "")
    assert blob.read_bytes() == source.read_bytes()


def test_html_is_read_in_the_charset_it_declares_and_without_one_by_detection(
    tmp_path: Path,
) -> None:
    page = "<html><head>{meta}<title>Port</title></head><body><p>{text}</p></body></html>"
    declared = tmp_path / "declared.html"
    declared.write_bytes(page.format(meta='<meta charset="windows-1251">', text=RUSSIAN)
                         .encode("cp1251"))  # fmt: skip
    undeclared = tmp_path / "undeclared.html"
    undeclared.write_bytes(page.format(meta="", text=FRENCH).encode("latin-1"))
    planned, text = _download_and_extract(tmp_path, declared)
    assert planned.encoding == "cp1251" and RUSSIAN.strip() in text
    planned, text = _download_and_extract(tmp_path, undeclared)
    assert planned.encoding == "cp1252" and "la jetée nord" in text


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (bytes(range(256)) * 16, r"binary content \(\d+ NUL bytes"),
        (b"\x00\x01\x02" * 2000, r"binary content"),
        (bytes(range(1, 256)) * 64, r"no character encoding reads it as text"),
    ],
)
def test_only_what_is_not_text_is_refused_and_the_reason_says_so(
    tmp_path: Path, data: bytes, reason: str
) -> None:
    source = tmp_path / "blob.txt"
    source.write_bytes(data)
    with pytest.raises(PoisonInput, match=reason):
        _download_and_extract(tmp_path, source)


def test_utf8_cut_inside_its_last_character_is_still_read_as_utf8(tmp_path: Path) -> None:
    source = tmp_path / "cut.txt"
    source.write_bytes(FRENCH.encode("utf-8") + "é".encode()[:1])
    assert extractors.text_encoding(source) == "utf-8"
