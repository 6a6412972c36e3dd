"""The fetcher against a real local HTTP server: resume with Range, clean restarts, final 4xx,
and the SSRF guard."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from docstreams_dev.servers.http_server import Behaviour, serving
from streams.adapters.blobstore import LocalBlobStore
from streams.adapters.fetch import AddressGuard, Fetcher
from streams.errors import PoisonInput, TransientError

LOOPBACK = ["127.0.0.1/32"]
BODY = os.urandom(3 * 2**20 + 12345)


def _fetcher(allowlist: list[str] = LOOPBACK, **kwargs: object) -> Fetcher:
    options: dict[str, object] = {"timeout_s": 10.0, "attempts": 3, "max_bytes": 2**30,
                                  "local_roots": ()} | kwargs  # fmt: skip
    return Fetcher(AddressGuard(allowlist), **options)  # type: ignore[arg-type]


def test_a_cut_download_resumes_with_range_without_refetching_received_bytes(
    tmp_path: Path,
) -> None:
    behaviour = Behaviour(files={"/big.bin": BODY}, cut_after=1_000_000)
    partial = LocalBlobStore(tmp_path).partial("t1", "doc")
    with serving(behaviour) as base:
        fetched = _fetcher().fetch(f"{base}/big.bin", partial)

    assert fetched.sha256 == hashlib.sha256(BODY).hexdigest()
    assert fetched.size == len(BODY) and fetched.resumed_from == 1_000_000
    assert behaviour.requests == [("/big.bin", None), ("/big.bin", "bytes=1000000-")]
    assert partial.data.read_bytes() == BODY


def test_a_server_that_ignores_range_leads_to_a_clean_restart(tmp_path: Path) -> None:
    behaviour = Behaviour(files={"/big.bin": BODY}, cut_after=500_000, ignore_range=True)
    partial = LocalBlobStore(tmp_path).partial("t1", "doc")
    with serving(behaviour) as base:
        fetched = _fetcher().fetch(f"{base}/big.bin", partial)
    assert fetched.resumed_from == 0
    assert fetched.sha256 == hashlib.sha256(BODY).hexdigest()
    assert partial.data.read_bytes() == BODY


def test_a_changed_object_is_downloaded_again_from_zero(tmp_path: Path) -> None:
    old, new = BODY[:2_000_000], os.urandom(2_100_000)
    behaviour = Behaviour(files={"/doc.bin": old}, cut_after=700_000)
    partial = LocalBlobStore(tmp_path).partial("t1", "doc")
    with serving(behaviour) as base:
        with pytest.raises(Exception, match="interrupted"):
            _fetcher(attempts=1).fetch(f"{base}/doc.bin", partial)
        assert partial.size() == 700_000
        behaviour.files["/doc.bin"] = new  # the ETag changes: If-Range fails, 200 comes back
        fetched = _fetcher().fetch(f"{base}/doc.bin", partial)
    assert behaviour.requests[-1] == ("/doc.bin", "bytes=700000-")
    assert fetched.resumed_from == 0
    assert fetched.sha256 == hashlib.sha256(new).hexdigest()


def test_http_404_is_final_and_named(tmp_path: Path) -> None:
    behaviour = Behaviour()
    with serving(behaviour) as base, pytest.raises(PoisonInput, match="HTTP 404"):
        _fetcher().fetch(f"{base}/missing.pdf", LocalBlobStore(tmp_path).partial("t", "d"))
    assert len(behaviour.requests) == 1  # not retried


def test_size_cap_refuses_a_too_large_document(tmp_path: Path) -> None:
    with (
        serving(Behaviour(files={"/big.bin": BODY})) as base,
        pytest.raises(PoisonInput, match="size cap"),
    ):
        _fetcher(max_bytes=1_000_000).fetch(
            f"{base}/big.bin", LocalBlobStore(tmp_path).partial("t", "d")
        )


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "169.254.169.254",  # cloud metadata
        "10.1.2.3",
        "192.168.0.10",
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "::1",
        "::ffff:127.0.0.1",  # IPv4-mapped IPv6
        "2130706433",  # 127.0.0.1 in decimal
        "0x7f.0.0.1",  # hex form
        "0177.0.0.1",  # octal form
        "fe80::1",
        "224.0.0.1",
    ],
)
def test_guard_refuses_non_public_addresses_in_every_notation(host: str) -> None:
    with pytest.raises(PoisonInput, match="not a public address"):
        AddressGuard().resolve(host, 80)


def test_allowlist_opens_exactly_what_it_names() -> None:
    guard = AddressGuard(["127.0.0.1/32"])
    assert guard.resolve("127.0.0.1", 80) == "127.0.0.1"
    with pytest.raises(PoisonInput):
        guard.resolve("169.254.169.254", 80)


def test_a_redirect_is_checked_again_by_the_guard(tmp_path: Path) -> None:
    behaviour = Behaviour(redirects={"/go": "http://169.254.169.254/latest/meta-data/"})
    with serving(behaviour) as base, pytest.raises(PoisonInput, match=r"169\.254\.169\.254"):
        _fetcher().fetch(f"{base}/go", LocalBlobStore(tmp_path).partial("t", "d"))


def test_local_sources_are_refused_when_no_root_is_configured(tmp_path: Path) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text("hello")
    store = LocalBlobStore(tmp_path / "blobs")
    with pytest.raises(PoisonInput, match="local sources are off"):
        _fetcher().fetch(str(doc), store.partial("t", "d"))


def test_a_file_under_a_local_source_root_is_fetched(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "doc.txt").write_text("hello")
    store = LocalBlobStore(tmp_path / "blobs")
    fetcher = _fetcher(local_roots=[root])
    for source in (f"file://{root}/sub/doc.txt", str(root / "sub" / "doc.txt"),
                   f"file://{root}/sub/../sub/doc.txt"):  # fmt: skip
        fetched = fetcher.fetch(source, store.partial("t", "d"))
        assert fetched.sha256 == hashlib.sha256(b"hello").hexdigest()


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("etc_passwd", "outside the folders"),
        ("dotdot_out_of_root", "outside the folders"),
        ("symlink_out_of_root", "outside the folders"),
        ("symlinked_folder_out_of_root", "outside the folders"),
        ("relative_path", "absolute path"),
        ("missing_file", "does not exist"),
        ("a_folder", "not a regular file"),
        ("file_url_with_a_host", "no host"),
    ],
)
def test_a_local_source_outside_the_roots_is_refused_without_naming_a_server_path(
    tmp_path: Path, case: str, reason: str
) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    outside = tmp_path / "secret.txt"
    outside.write_text("the service account token")
    (root / "link.txt").symlink_to(outside)
    (root / "linked").symlink_to(tmp_path)
    (root / "folder").mkdir()
    source = {
        "etc_passwd": "file:///etc/passwd",
        "dotdot_out_of_root": f"{root}/../secret.txt",
        "symlink_out_of_root": f"file://{root}/link.txt",
        "symlinked_folder_out_of_root": f"{root}/linked/secret.txt",
        "relative_path": "docs/../secret.txt",
        "missing_file": f"{root}/nothing-here.txt",
        "a_folder": f"{root}/folder",
        "file_url_with_a_host": f"file://files.example.com{root}/x.txt",
    }[case]
    store = LocalBlobStore(tmp_path / "blobs")
    with pytest.raises(PoisonInput, match=reason) as refused:
        _fetcher(local_roots=[root]).fetch(source, store.partial("t", "d"))
    assert "/" not in str(refused.value).replace("file://", "").replace("http(s)", "")
    assert not store.partial("t", "d").data.exists()


def test_other_schemes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PoisonInput, match="only http"):
        _fetcher().fetch("ftp://example.org/x.pdf", LocalBlobStore(tmp_path).partial("t", "d"))


def test_blob_keys_never_leave_the_store(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    with pytest.raises(PoisonInput, match="outside"):
        store.path("../../etc/passwd")
    partial = store.partial("t1", "../../evil")
    assert partial.data.resolve().is_relative_to(tmp_path.resolve())


def test_a_trickling_server_is_cut_off_by_the_minimum_rate() -> None:
    fetcher = _fetcher(min_bytes_per_s=1024)
    fetcher._check_pace("u", received=5, seconds=5)  # judged only after the grace period
    fetcher._check_pace("u", received=2_000_000, seconds=30)
    with pytest.raises(TransientError, match="under the minimum of 1024 B/s"):
        fetcher._check_pace("u", received=30, seconds=30)  # 1 byte per second
