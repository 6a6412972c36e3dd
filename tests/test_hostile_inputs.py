"""Hostile inputs on the real stack (`run all`: every stage its own process, real Kafka and
Weaviate): URLs aimed at addresses the SSRF guard must refuse, files built to exhaust the parser,
and malformed requests. Each is dead-lettered with a precise reason in bounded time, the stage
processes survive (only the parser's child may die), and a normal document still completes.

A recording HTTP server on 127.0.0.2 — outside the fetch allowlist — stands in for every
internal service: it must never receive a request.

Also real malformed PDFs from public corpora (tests/real_pdfs.py), local sources outside their
roots, legacy text encodings; and no reason anywhere (dead letters, status, callbacks) names a
server path.
"""

from __future__ import annotations

import base64
import re
import socket
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest
from confluent_kafka import Producer
from pydantic import SecretStr

from docstreams_dev.servers.callback_receiver import Receiver, receiving
from docstreams_dev.servers.http_server import Behaviour, serving
from streams.adapters.blobstore import LocalBlobStore
from streams.adapters.embedders import LocalMiniLM
from streams.adapters.fetch import AddressGuard, Fetcher
from streams.adapters.weaviate_store import ChunkIndex
from streams.errors import PoisonInput
from streams.kafka_clients import producer_config
from streams.messages import DeadLetter
from streams.producer import request_delete
from streams.settings import Settings
from streams.status_client import document_status
from streams.topics import topic_name
from tests import hostile_files, real_pdfs
from tests.apps_helpers import TENANT, app_process, isolated, running_apps, submit_and_wait
from tests.kafka_helpers import read_topic, wait_for
from tests.pdfs import ROOT, SAMPLE, numbered_pages, write_pdf

MAX_BYTES = 4 * 2**20
MAX_PAGES = 60
MAX_PAGE_CHARS = 20_000


@dataclass
class Hostile:
    settings: Settings
    supervisor: psutil.Process
    files: Path
    good: str  # base URL of the allowlisted file server (127.0.0.1)
    internal: str  # base URL of the recording server (127.0.0.2): must stay untouched
    internal_port: int
    internal_requests: Behaviour
    callbacks: Receiver
    hook: str  # the callback URL every hostile submission gives


@pytest.fixture(scope="module")
def hostile(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Hostile]:
    files = tmp_path_factory.mktemp("hostile")
    internal = Behaviour(files={"/doc.pdf": SAMPLE.read_bytes()})
    good = Behaviour(
        files={"/big.bin": b"x" * (MAX_BYTES + 1), "/doc.pdf": SAMPLE.read_bytes()},
        redirects={"/loop": "/loop", "/to-file": "file:///etc/passwd"},
    )
    callbacks = Receiver()
    with (
        serving(good) as good_url,
        serving(internal, host="127.0.0.2") as internal_url,
        receiving(callbacks) as hook,
    ):
        internal_port = int(internal_url.rsplit(":", 1)[1])
        good.redirects["/to-internal"] = f"{internal_url}/doc.pdf"
        settings = isolated(
            stack_settings,
            tmp_path_factory,
            "hostile",
            fetch_allowlist=["127.0.0.1/32"],
            # The recording server's port is allowed: it is refused for its address.
            outbound_ports=[80, 443, internal_port],
            fetch_attempts=1,
            fetch_timeout_s=5.0,
            max_download_bytes=MAX_BYTES,
            max_pages=MAX_PAGES,
            max_page_chars=MAX_PAGE_CHARS,
            parser_memory_mb=512,
            parser_timeout_s=15.0,
            text_window_bytes=64 * 1024,
            callback_secrets={TENANT: SecretStr("hostile-callback-secret")},
            callback_allowlist=["127.0.0.1/32"],
        )
        with running_apps(settings) as supervisor:
            yield Hostile(settings, supervisor, files, good_url, internal_url, internal_port,
                          internal, callbacks, hook)  # fmt: skip


# --- each hostile source: (what builds it, the stage that refuses it, the reason) -----------------
Source = Callable[[Hostile], str]


def _file(build: Callable[[Path], Path], name: str) -> Source:
    return lambda h: str(build(h.files / f"{uuid.uuid4().hex[:6]}-{name}"))


def _text(content: bytes, name: str) -> Source:
    def make(h: Hostile) -> str:
        path = h.files / f"{uuid.uuid4().hex[:6]}-{name}"
        path.write_bytes(content)
        return str(path)

    return make


def _symlink(target: str, name: str) -> Source:
    def make(h: Hostile) -> str:
        link = h.files / f"{uuid.uuid4().hex[:6]}-{name}"
        link.symlink_to(target)
        return str(link)

    return make


PUBLIC_ONLY = r"not a public address"
OUTSIDE = r"outside the folders local sources may come from"
CASES: dict[str, tuple[Source, str, str]] = {
    # URLs: schemes
    "ftp_scheme": (lambda h: "ftp://example.com/doc.pdf", "download", r"only http\(s\) URLs"),
    "gopher_scheme": (lambda h: f"gopher://127.0.0.2:{h.internal_port}/_x", "download",
                      r"only http\(s\) URLs"),
    # URLs: addresses that are not public, in every spelling
    "cloud_metadata": (lambda h: "http://169.254.169.254/latest/meta-data/", "download",
                       PUBLIC_ONLY),
    "loopback_outside_allowlist": (lambda h: f"{h.internal}/doc.pdf", "download", PUBLIC_ONLY),
    "unspecified_ipv4": (lambda h: f"http://0.0.0.0:{h.internal_port}/doc.pdf", "download",
                         PUBLIC_ONLY),
    "unspecified_ipv6": (lambda h: f"http://[::]:{h.internal_port}/doc.pdf", "download",
                         PUBLIC_ONLY),
    "ipv4_mapped_ipv6": (lambda h: f"http://[::ffff:127.0.0.2]:{h.internal_port}/doc.pdf",
                         "download", PUBLIC_ONLY),
    "decimal_host": (lambda h: f"http://2130706434:{h.internal_port}/doc.pdf", "download",
                     PUBLIC_ONLY),
    "hex_host": (lambda h: f"http://0x7f000002:{h.internal_port}/doc.pdf", "download",
                 PUBLIC_ONLY),
    "octal_host": (lambda h: f"http://0177.0.0.2:{h.internal_port}/doc.pdf", "download",
                   r"invalid URL .*0177\.0\.0\.2"),
    "private_10": (lambda h: "http://10.1.2.3/doc.pdf", "download", PUBLIC_ONLY),
    "private_192_168": (lambda h: "http://192.168.0.1/doc.pdf", "download", PUBLIC_ONLY),
    "carrier_grade_nat": (lambda h: "http://100.64.0.1/doc.pdf", "download", PUBLIC_ONLY),
    "link_local_ipv6": (lambda h: "http://[fe80::1]/doc.pdf", "download", PUBLIC_ONLY),
    "unique_local_ipv6": (lambda h: "http://[fd00::1]/doc.pdf", "download", PUBLIC_ONLY),
    "port_not_allowed": (lambda h: "http://93.184.216.34:22/doc.pdf", "download",
                         r"port 22 .* not an allowed port"),
    # URLs: redirects
    "redirect_to_internal": (lambda h: f"{h.good}/to-internal", "download", PUBLIC_ONLY),
    "redirect_to_file_scheme": (lambda h: f"{h.good}/to-file", "download", r"refused redirect"),
    "redirect_loop": (lambda h: f"{h.good}/loop", "download", r"more than 5 redirects"),
    "download_over_size_cap": (lambda h: f"{h.good}/big.bin", "download", r"over the size cap"),
    # files
    "empty_file": (_text(b"", "empty.txt"), "download", r"empty document"),
    "binary_garbage": (_text(bytes(range(256)) * 64, "noise.bin"), "download",
                       r"binary content"),
    "binary_without_nul_bytes": (_text(bytes(range(1, 256)) * 64, "noise.txt"), "download",
                                 r"no character encoding reads it as text"),
    # local sources: confined to the roots (the test's temporary folders, the checkout)
    "local_file_outside_the_roots": (lambda h: "file:///etc/passwd", "download", OUTSIDE),
    "symlink_out_of_a_root": (_symlink("/etc/passwd", "passwd.txt"), "download", OUTSIDE),
    "dotdot_out_of_a_root": (lambda h: f"{h.files}/../../../../../../etc/passwd", "download",
                             OUTSIDE),
    "zip_not_docx": (_file(hostile_files.zip_not_docx, "archive.zip"), "download",
                     r"ZIP archive that is not DOCX"),
    "truncated_pdf": (_file(hostile_files.truncated_pdf, "cut.pdf"), "download",
                      r"not a readable PDF"),
    "encrypted_pdf": (_file(hostile_files.encrypted_pdf, "locked.pdf"), "download",
                      r"password is required"),
    "too_many_pages": (_file(lambda p: write_pdf(p, numbered_pages(MAX_PAGES + 5)), "long.pdf"),
                       "download", rf"resource_limit: pages: {MAX_PAGES + 5} pages"),
    "pdf_flate_bomb": (_file(lambda p: hostile_files.flate_bomb_pdf(p, 700), "bomb.pdf"),
                       "extract", r"resource_limit: (memory|time): extracting pages 1-1"),
    "docx_zip_bomb": (_file(lambda p: hostile_files.docx_bomb(p, 700), "bomb.docx"), "extract",
                      r"resource_limit: inflated_size"),
    "page_text_over_cap": (_text(b"word " * 6000, "one-line.txt"), "extract",
                           r"resource_limit: page_text: page 1 has \d+ characters"),
    # an ID3 tag and then no audio: ffprobe's complaint names the blob's path, the reason not
    "fake_mp3": (_text(b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"not audio at all " * 64,
                       "song.mp3"), "download", r"^not a readable audio/video file"),
    "pdf_claimed_but_html": (_text(b"<html><body>Please log in</body></html>", "report.pdf"),
                             "download", r"says application/pdf but the bytes are text/html"),
}  # fmt: skip


pytestmark = pytest.mark.stack


@pytest.mark.parametrize("case", list(CASES))
def test_a_hostile_source_is_dead_lettered_with_its_reason(hostile: Hostile, case: str) -> None:
    build, stage, reason = CASES[case]
    document = f"hostile-{case}"
    progress = submit_and_wait(hostile.settings, build(hostile), document, timeout_s=120,
                               callback_url=hostile.hook)  # fmt: skip
    assert progress.failure is not None, f"{case} was not refused"
    assert progress.failure.stage == stage
    assert re.search(reason, progress.failure.reason), progress.failure.reason
    letters = [DeadLetter.from_wire(v) for v in read_topic(hostile.settings, "dlq")]
    assert any(d.document_id == document and d.reason == progress.failure.reason
               for d in letters)  # fmt: skip


@pytest.mark.parametrize("case", list(real_pdfs.REAL_PDFS))
def test_a_real_malformed_pdf_from_a_public_corpus_completes_or_is_refused_with_its_reason(
    hostile: Hostile, case: str
) -> None:
    spec = real_pdfs.REAL_PDFS[case]
    source = hostile.files / f"{case}.pdf"
    source.write_bytes(real_pdfs.real_pdf(case).read_bytes())
    progress = submit_and_wait(hostile.settings, str(source), f"real-{case}", timeout_s=120,
                               callback_url=hostile.hook)  # fmt: skip
    if spec.chunks is None:
        assert progress.failure is not None, f"{case} was not refused"
        assert re.search(spec.reason or "", progress.failure.reason), progress.failure.reason
    else:
        assert progress.completed is not None, progress.failure
        assert progress.completed.chunks >= spec.chunks


def test_a_new_tenants_first_document_without_text_completes_with_no_chunks(
    hostile: Hostile,
) -> None:
    """No chunk was ever written for the tenant, so Weaviate has no such tenant to count in:
    the completion check must read that as 0, not wait for it."""
    source = hostile.files / "no-text.pdf"
    source.write_bytes(real_pdfs.real_pdf("fuzzing_corpus_stream_cut_short").read_bytes())
    progress = submit_and_wait(hostile.settings, str(source), "no-text", "blank", timeout_s=120)
    assert progress.completed is not None, progress.failure
    assert progress.completed.chunks == 0
    assert document_status(hostile.settings, "blank", "no-text")["phase"] == "completed"
    index = ChunkIndex(hostile.settings)
    try:
        assert index.search("blank", LocalMiniLM().embed(["anything"])[0].tolist(), 5) == []
    finally:
        index.close()


RAW_CASES: dict[str, tuple[dict[str, Any], str]] = {
    "tenant_id_with_path": ({"tenant_id": "acme/../globex"}, r"tenant_id"),
    "tenant_id_too_long": ({"tenant_id": "t" * 65}, r"tenant_id"),
    "document_id_traversal": ({"document_id": "../../etc/passwd"}, r"document_id"),
    "unknown_field": ({"shell": "rm -rf /"}, r"[Ee]xtra inputs are not permitted"),
    "oversized_source": ({"source": "http://example.com/" + "a" * 5000}, r"source"),
    "too_much_metadata": ({"metadata": {f"k{i}": "v" for i in range(40)}}, r"metadata"),
    "script_callback_url": ({"callback_url": "javascript:alert(1)"}, r"callback_url"),
}


@pytest.mark.parametrize("case", list(RAW_CASES))
def test_a_malformed_request_is_dead_lettered_at_the_edge(hostile: Hostile, case: str) -> None:
    change, reason = RAW_CASES[case]
    marker = uuid.uuid4().hex
    record = {"type": "DocumentSubmitted", "tenant_id": TENANT, "document_id": f"raw-{marker}",
              "source": f"http://example.com/{marker}.pdf", "submitted_at": "2026-11-23T00:00:00Z",
              **change}  # fmt: skip
    value = orjson.dumps(record)
    producer = Producer(producer_config(hostile.settings))
    producer.produce(topic_name(hostile.settings, "ingest"), value=value, key=b"acme/raw")
    assert producer.flush(30) == 0

    def letter() -> DeadLetter | None:
        for raw in read_topic(hostile.settings, "dlq"):
            found: DeadLetter = DeadLetter.from_wire(raw)
            if found.original_value and base64.b64decode(found.original_value) == value:
                return found
        return None

    wait_for(lambda: letter() is not None, 120)
    found = letter()
    assert found is not None and found.stage == "download"
    assert found.error_class == "InvalidWireMessage" and re.search(reason, found.reason)


def test_a_hostile_file_name_cannot_leave_the_blob_store(hostile: Hostile) -> None:
    source = hostile.files / "plain.txt"
    source.write_text("Berth nine is closed for dredging until spring.\n")
    progress = submit_and_wait(hostile.settings, str(source), "named-badly", timeout_s=120,
                               filename="../../../../../tmp/docstreams-escape.txt")  # fmt: skip
    assert progress.completed is not None, progress.failure
    assert not Path("/tmp/docstreams-escape.txt").exists()
    blob_dir = Path(hostile.settings.blob_dir).resolve()
    for path in blob_dir.rglob("*"):
        assert path.resolve().is_relative_to(blob_dir)


def test_a_looping_page_tree_ends_within_bounds_and_the_bad_page_is_recorded(
    hostile: Hostile,
) -> None:
    path = hostile_files.page_tree_loop_pdf(hostile.files / "loop.pdf")
    progress = submit_and_wait(hostile.settings, str(path), "page-loop", timeout_s=120)
    if progress.failure is not None:  # refused whole is as good as recorded page by page
        assert re.search(r"failed to extract|not a readable PDF", progress.failure.reason)
    else:
        assert progress.completed is not None and progress.completed.chunks == 0


def test_after_every_hostile_input_the_stages_still_run_and_a_good_document_completes(
    hostile: Hostile,
) -> None:
    names = ["download", "extract", "chunk", "embed", "index"]
    pids = {n: p.pid for n in names if (p := app_process(hostile.supervisor, n)) is not None}
    assert len(pids) == len(names)
    source = f"{hostile.good}/doc.pdf"
    progress = submit_and_wait(hostile.settings, source, "after-the-storm", timeout_s=120)
    assert progress.completed is not None and progress.completed.chunks > 0
    still = {n: p.pid for n in names if (p := app_process(hostile.supervisor, n)) is not None}
    assert still == pids  # no stage process died: only parser children did
    assert hostile.internal_requests.requests == []  # nothing ever reached 127.0.0.2


def test_one_tenant_never_sees_another_tenants_documents_in_search_status_or_delete(
    hostile: Hostile,
) -> None:
    """Two tenants, the same document id, different text: each tenant's search, status and
    delete reach only its own."""
    settings = hostile.settings
    texts = {
        "alpha": "The alpha lighthouse keeper polishes the brass lens at dawn.",
        "beta": "The beta customs office inspects salted herring barrels on Tuesdays.",
    }
    versions = {}
    for tenant, text in texts.items():
        path = hostile.files / f"{tenant}.txt"
        path.write_text(text + "\n")
        progress = submit_and_wait(settings, str(path), "shared-id", tenant, timeout_s=120)
        assert progress.completed is not None, progress.failure
        versions[tenant] = progress.completed.version
    embedder = LocalMiniLM()
    index = ChunkIndex(settings)
    try:
        for tenant, other in (("alpha", "beta"), ("beta", "alpha")):
            vector = embedder.embed([texts[other]])[0].tolist()  # the other tenant's words
            hits = index.search(tenant, vector, 10)
            assert hits and all(texts[tenant] in h.text for h in hits)
            status = document_status(settings, tenant, "shared-id")
            assert status["version"] == versions[tenant] != versions[other]
        assert index.search("gamma", embedder.embed([texts["alpha"]])[0].tolist(), 10) == []
        request_delete(settings, "alpha", "shared-id")
        wait_for(lambda: index.count("alpha", "shared-id") == 0, 60)
        assert index.count("beta", "shared-id") > 0
        assert document_status(settings, "beta", "shared-id")["phase"] == "completed"
    finally:
        index.close()


# --- the resolver itself: names that resolve to refused addresses --------------------------------
@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[list[str]]]:
    """Name -> the answers of its successive lookups (each a list of addresses; the last
    answer repeats). Other names resolve as usual."""
    answers: dict[str, list[list[str]]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in answers:
            return real(host, port, *args, **kwargs)
        queue = answers[host]
        addresses = queue.pop(0) if len(queue) > 1 else queue[0]
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


def _fetcher(allowlist: list[str]) -> Fetcher:
    return Fetcher(AddressGuard(allowlist), timeout_s=5, attempts=1, max_bytes=MAX_BYTES,
                   local_roots=())  # fmt: skip


def test_a_public_looking_name_that_resolves_to_an_internal_address_is_refused(
    fake_dns: dict[str, list[list[str]]], tmp_path: Path
) -> None:
    internal = Behaviour(files={"/doc.pdf": b"secret"})
    with serving(internal, host="127.0.0.2") as url:
        port = url.rsplit(":", 1)[1]
        fake_dns["intranet.example.com"] = [["127.0.0.2"]]
        store = LocalBlobStore(tmp_path)
        with pytest.raises(PoisonInput, match=PUBLIC_ONLY):
            _fetcher([]).fetch(f"http://intranet.example.com:{port}/doc.pdf",
                               store.partial(TENANT, "d"))  # fmt: skip
    assert internal.requests == []


def test_a_name_with_one_internal_address_among_public_ones_is_refused(
    fake_dns: dict[str, list[list[str]]],
) -> None:
    fake_dns["mixed.example.com"] = [["93.184.216.34", "10.0.0.7"]]
    with pytest.raises(PoisonInput, match=r"resolves to 10\.0\.0\.7"):
        AddressGuard().resolve("mixed.example.com", 80)


def test_dns_rebinding_cannot_move_the_connection_to_an_internal_address(
    fake_dns: dict[str, list[list[str]]], tmp_path: Path
) -> None:
    """The name is checked once and the connection goes to the checked address: a second
    lookup, which would now answer 127.0.0.2 (where an internal server listens on the same
    port), is never made."""
    allowed = Behaviour(files={"/doc.pdf": SAMPLE.read_bytes()})
    internal = Behaviour(files={"/doc.pdf": b"secret"})
    with serving(allowed, host="127.0.0.3") as good_url:
        port = int(good_url.rsplit(":", 1)[1])
        with serving(internal, host="127.0.0.2", port=port):
            fake_dns["rebind.example.com"] = [["127.0.0.3"], ["127.0.0.2"]]
            store = LocalBlobStore(tmp_path)
            fetched = _fetcher(["127.0.0.3/32"]).fetch(
                f"http://rebind.example.com:{port}/doc.pdf", store.partial(TENANT, "d")
            )
    assert fetched.size == SAMPLE.stat().st_size
    assert [path for path, _ in allowed.requests] == ["/doc.pdf"]
    assert internal.requests == []


# --- legacy text ------------------------------------------------------------------------------
ACCENTED = "À la jetée nord, le maître de port allume quarante-deux lanternes bleues."
LEGACY_TEXT = (
    "Les dragueurs travaillent au quai neuf jusqu'au printemps prochain.\n"
    f"{ACCENTED}\n"
    "Les bateaux-pilotes partent du poste d'amarrage à marée haute, été comme hiver.\n"
)


WINDOWS_ONLY = (
    "# Port \u201cnord\u201d \u2014 5 \u20ac\n\n"  # curly quotes, dash, euro: not Latin-1
)
LEGACY_CASES = {
    "latin_1_text": (LEGACY_TEXT.encode("latin-1"), "notes.txt", {"cp1252", "iso8859-1"}),
    "latin_1_markdown": (("# Port\n\n" + LEGACY_TEXT).encode("latin-1"), "notes.md",
                         {"cp1252", "iso8859-1"}),
    "windows_1252_text": ((WINDOWS_ONLY + LEGACY_TEXT).encode("cp1252"), "notes.txt", {"cp1252"}),
    "windows_1252_markdown": ((WINDOWS_ONLY + LEGACY_TEXT).encode("cp1252"), "notes.md",
                              {"cp1252"}),
    "utf_16_text": (LEGACY_TEXT.encode("utf-16"), "notes.txt", {"utf-16"}),
    "utf_16_markdown": (("# Port\n\n" + LEGACY_TEXT).encode("utf-16"), "notes.md", {"utf-16"}),
}  # fmt: skip


@pytest.mark.parametrize("case", list(LEGACY_CASES))
def test_legacy_encoded_text_is_searchable_by_a_sentence_with_accents(
    hostile: Hostile, case: str
) -> None:
    encoded, name, encodings = LEGACY_CASES[case]
    source = hostile.files / f"{case}-{name}"
    source.write_bytes(encoded)
    document = f"legacy-{case}"
    progress = submit_and_wait(hostile.settings, str(source), document, timeout_s=120)
    assert progress.completed is not None, progress.failure
    assert document_status(hostile.settings, TENANT, document)["encoding"] in encodings
    index = ChunkIndex(hostile.settings)
    try:
        vector = LocalMiniLM().embed([ACCENTED])[0].tolist()
        hits = [h for h in index.search(TENANT, vector, 20) if h.document_id == document]
        assert hits and ACCENTED in hits[0].text, [h.text for h in hits]
    finally:
        index.close()


# --- reasons ----------------------------------------------------------------------------------
def test_no_reason_in_the_dead_letters_the_status_or_a_callback_names_a_server_path(
    hostile: Hostile,
) -> None:
    """Runs after every case above: each reason they produced, wherever a caller or an operator
    reads it, names the document and the problem, never a server path or a traceback."""
    server = {str(hostile.files), str(hostile.settings.blob_dir), str(Path.home()), str(ROOT),
              sys.prefix, "/tmp/", "/etc/", "/usr/", "/var/", "/proc/", "/root", "site-packages",
              "Traceback", 'File "'}  # fmt: skip
    letters = [DeadLetter.from_wire(v) for v in read_topic(hostile.settings, "dlq")]
    failed = {d.document_id for d in letters if d.document_id and d.tenant_id == TENANT}
    assert len(failed) >= len(CASES)  # every hostile case ran before this test
    hooked = {d for d in failed if d.startswith(("hostile-", "real-"))}
    wait_for(lambda: all(hostile.callbacks.called_back(d) for d in hooked), 120)
    texts = {f"dead letter {d.document_id}": d.reason for d in letters}
    texts |= {f"status {d}": orjson.dumps(document_status(hostile.settings, TENANT, d)).decode()
              for d in hooked}  # fmt: skip
    texts |= {f"callback {r.json()['document_id']}": r.body.decode()
              for r in hostile.callbacks.received}  # fmt: skip
    assert len(texts) > 2 * len(CASES)
    leaks = {where: [s for s in server if s in text] for where, text in texts.items()}
    assert {where: found for where, found in leaks.items() if found} == {}
