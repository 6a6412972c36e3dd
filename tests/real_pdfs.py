"""Real malformed, encrypted and unusual PDFs from public test corpora, beside the generated ones of
tests/hostile_files.py: the test files that pypdf's and pikepdf's source distributions ship
(pikepdf's include an OSS-Fuzz crasher and its fuzzing corpus). Fetched from PyPI, each archive
and each file pinned by sha256, cached in ~/.cache/docstreams/corpus; never committed.

Each is named by what it exercises, with what the pipeline must do with it: complete (with at
least ``chunks`` chunks: its text was read) or refuse it with ``reason``.
"""

from __future__ import annotations

import hashlib
import tarfile
from dataclasses import dataclass
from pathlib import Path

import httpx

CACHE = Path.home() / ".cache" / "docstreams" / "corpus"
_FILES = "https://files.pythonhosted.org/packages"
SDISTS = {
    "pypdf": (f"{_FILES}/60/d3/367aa9baefaededd3321cde46bbcb9f008bb51cef3a6b745608352a99534/"
              "pypdf-7.1.0.tar.gz",
              "ca3fa902369e98a6d2cb7b56396de902b72ef9bb3c1e8706c1bfc7d8bd0cf0d7"),
    "pikepdf": (f"{_FILES}/2e/5c/db56403f493bae2e35a0d5d2c9ad358b011f142b760282698a9f2732941e/"
                "pikepdf-10.18.0.tar.gz",
                "cb555ebff93482e8a6eb55881488b469bbb2b5675161c1b93a0510a8642d98d0"),
}  # fmt: skip
PASSWORD = r"encrypted PDF: a password is required"


@dataclass(frozen=True)
class RealPdf:
    sdist: str
    member: str
    sha256: str
    chunks: int | None = 0  # completes with at least this many chunks; None: refused
    reason: str | None = None


REAL_PDFS: dict[str, RealPdf] = {
    "oss_fuzz_crasher_without_startxref": RealPdf(
        "pikepdf", "pikepdf-10.18.0/tests/resources/fuzz/378014596.pdf",
        "3003f613b4c123b7038903cfe81e4aeb07a1f2c74278dcee6047466208867694", None,
        r"every page of window 0 failed to extract; first: PdfiumError"),
    "fuzzing_corpus_stream_cut_short": RealPdf(
        "pikepdf", "pikepdf-10.18.0/fuzzing/corpus/small.pdf",
        "3c40923beaa848f1d5995e7dc37fe249a69e5f9209bc23f5bed0215d45594ac2"),
    "broken_linearization_dictionary": RealPdf(
        "pikepdf", "pikepdf-10.18.0/tests/resources/badlin1.pdf",
        "236e5197c21f3dd1b032951d205156988b788e4ce1e36d16cd17a1c5781a0799", chunks=1),
    "content_stream_syntax_errors": RealPdf(
        "pikepdf", "pikepdf-10.18.0/tests/resources/content-stream-errors.pdf",
        "19bd84be7fb78a9b30836c3eb3714aa695b84f050cb2a7e6b766d2a46dfd57f5", chunks=1),
    "outline_that_cycles": RealPdf(
        "pikepdf", "pikepdf-10.18.0/tests/resources/cyclic-toc.pdf",
        "20bd7f9073fa2dfc4fc3adeb5899538efa7ebe38074534e800a07c696e5c2852"),
    "invalid_creation_date": RealPdf(
        "pikepdf", "pikepdf-10.18.0/tests/resources/invalid_creationdate.pdf",
        "c3fbdaa40cd1c678c492f3c1032c33b044077b59a9c1bb5b0f2a71a7f6a0324b"),
    "jbig2_scan_with_global_segments": RealPdf(
        "pikepdf", "pikepdf-10.18.0/tests/resources/jbig2global.pdf",
        "fb88cd4670abc1ac1d012350b69a15b9af5b886e8358b2435c1cd48ae90582c0", chunks=1),
    "truetype_font_without_unicode_map": RealPdf(
        "pikepdf", "pikepdf-10.18.0/tests/resources/pdfa/truetype_font_nomapping.pdf",
        "d8180979c6ab72d74407360e3b780dacc09e78bcca4af2c15b4857e62bdb0314"),
    "rc4_encrypted_with_a_user_password": RealPdf(
        "pikepdf", "pikepdf-10.18.0/tests/resources/graph-encrypted.pdf",
        "c02cb92751c4a0ba4f0dedebe687568984e99ae527189574bcd03440fc854384", None, PASSWORD),
    "aes256_encrypted_with_a_user_password": RealPdf(
        "pypdf", "pypdf-7.1.0/resources/encryption/r6-user-password.pdf",
        "440f63996cdda90f55f94532d5986066baf2939d301010dd4a4b5f2d6509de42", None, PASSWORD),
    "encrypted_with_an_owner_password_only": RealPdf(
        "pypdf", "pypdf-7.1.0/resources/encryption/r4-owner-password.pdf",
        "26bc009957639957d7fd9b49f17e123deb60bfca8617c5b0a3f6de25eef30e34", chunks=1),
    "encrypted_without_a_document_id": RealPdf(
        "pypdf", "pypdf-7.1.0/resources/encrypted_doc_no_id.pdf",
        "338dc8e82430d3fe7927d529d389969beff69323a402a080fa81ddd3ce678eee"),
    "outline_with_invalid_destinations": RealPdf(
        "pypdf", "pypdf-7.1.0/resources/outlines-with-invalid-destinations.pdf",
        "c486aa96c548e249997bd992f8527fa96dbb7b155dc3e954474f192091f23fd8", chunks=1),
    "ccitt_fax_scan_without_text": RealPdf(
        "pypdf", "pypdf-7.1.0/resources/imagemagick-CCITTFaxDecode.pdf",
        "cf6f94b533dc28974961fd62a67ebfc722224a0be8a4f0c4c91b26a522d5f70d"),
}  # fmt: skip


def real_pdf(name: str) -> Path:
    """The file, from the cache or fetched and checked."""
    spec = REAL_PDFS[name]
    target = CACHE / spec.sdist / Path(spec.member).name
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(_sdist(spec.sdist)) as archive:
            member = archive.extractfile(spec.member)
            if member is None:
                raise FileNotFoundError(f"{spec.member} is not a file in {spec.sdist}")
            data = member.read()
        _check(data, spec.sha256, spec.member)
        partial = target.with_suffix(".part")
        partial.write_bytes(data)
        partial.replace(target)
    _check(target.read_bytes(), spec.sha256, spec.member)
    return target


def _sdist(name: str) -> Path:
    url, sha256 = SDISTS[name]
    path = CACHE / url.rsplit("/", 1)[1]
    if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != sha256:
        partial = path.with_suffix(".part")
        with httpx.stream("GET", url, timeout=120, follow_redirects=True) as response:
            response.raise_for_status()
            with partial.open("wb") as out:
                for block in response.iter_bytes():
                    out.write(block)
        _check(partial.read_bytes(), sha256, url)
        partial.replace(path)
    return path


def _check(data: bytes, sha256: str, what: str) -> None:
    if hashlib.sha256(data).hexdigest() != sha256:
        raise RuntimeError(f"{what}: sha256 differs from the pinned {sha256}")
