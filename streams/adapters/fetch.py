"""Fetching a document's bytes into the blob store: streamed, resumable, guarded against SSRF.

- Every address a host resolves to must be public (or in the allowlist); the connection goes
  to the address that was checked (no second DNS lookup to rebind), and each redirect is
  checked again, at most ``MAX_REDIRECTS`` of them.
- A partial download resumes with ``Range`` + ``If-Range`` (ETag, else Last-Modified); a server
  that ignores Range (200) or whose object changed restarts from byte 0.
- Network errors, 429 and 5xx are retried with exponential backoff and jitter (honouring
  Retry-After); other 4xx are final. sha256 is computed over the whole file as it is written.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from streams.adapters.blobstore import PartialDownload
from streams.errors import PoisonInput, TransientError

MAX_REDIRECTS = 5
_CHUNK_BYTES = 1 << 20
_MAX_RETRY_AFTER_S = 60.0
_PACE_GRACE_S = 10.0  # slow starts are normal; judge the rate after this

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Fetched:
    sha256: str
    size: int
    resumed_from: int  # bytes kept from an earlier partial download


class AddressGuard:
    """Refuses any destination that is not a public address on an allowed port, unless its
    address is allowlisted (an operator's explicit choice: any port)."""

    def __init__(self, allowlist: Iterable[str] = (), ports: Iterable[int] = ()) -> None:
        self.allowlist = [ipaddress.ip_network(c, strict=False) for c in allowlist]
        self.ports = frozenset(ports)  # empty: any port

    def allowlisted(self, address: IPAddress) -> bool:
        return any(_unmapped(address) in net for net in self.allowlist)

    def allowed(self, address: IPAddress) -> bool:
        if self.allowlisted(address):
            return True
        address = _unmapped(address)
        return address.is_global and not address.is_multicast

    def resolve(self, host: str, port: int) -> str:
        """The one checked address to connect to; every resolved address must pass."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise TransientError(f"cannot resolve {host!r}: {exc}") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        for address in addresses:
            if self.ports and port not in self.ports and not self.allowlisted(address):
                raise PoisonInput(
                    f"refused: port {port} of {host!r} is not an allowed port "
                    f"({sorted(self.ports)}; DOCSTREAMS_OUTBOUND_PORTS)"
                )
            if not self.allowed(address):
                raise PoisonInput(
                    f"refused: {host!r} resolves to {address}, which is not a public address "
                    "(SSRF guard; allowlist it with DOCSTREAMS_FETCH_ALLOWLIST if intended)"
                )
        return str(addresses[0])


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return address


def pinned_request(
    client: httpx.Client,
    guard: AddressGuard,
    method: str,
    target: httpx.URL,
    headers: dict[str, str],
    content: bytes | None = None,
) -> httpx.Request:
    """A request to the address the guard checked, not to a second lookup of the name (DNS
    rebinding); Host and TLS SNI still name the host, so virtual hosts and certificates work."""
    port = target.port or (443 if target.scheme == "https" else 80)
    address = guard.resolve(target.host, port)
    return client.build_request(
        method,
        target.copy_with(host=address),
        headers={**headers, "Host": target.netloc.decode("ascii")},
        content=content,
        extensions={"sni_hostname": target.host} if target.scheme == "https" else {},
    )


class Fetcher:
    def __init__(
        self,
        guard: AddressGuard,
        *,
        timeout_s: float,
        attempts: int,
        max_bytes: int,
        local_roots: Sequence[Path] = (),
        min_bytes_per_s: int = 1024,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.guard = guard
        self.min_bytes_per_s = min_bytes_per_s
        self.attempts = attempts
        self.max_bytes = max_bytes
        # Resolved once: a root given through a symlink still contains what it points to.
        self.local_roots = [Path(root).expanduser().resolve() for root in local_roots]
        self.client = httpx.Client(
            timeout=httpx.Timeout(timeout_s), follow_redirects=False, transport=transport
        )

    def close(self) -> None:
        self.client.close()

    def fetch(self, source: str, partial: PartialDownload) -> Fetched:
        local = self._local_path(source)
        if local is not None:
            return self._copy_local(local, partial)
        scheme = urlsplit(source).scheme.lower()
        if scheme not in ("http", "https"):
            raise PoisonInput(f"unsupported source {source[:200]!r}: only http(s) URLs")
        try:
            httpx.URL(source)
        except httpx.InvalidURL as exc:  # e.g. an octal host such as 0177.0.0.1
            raise PoisonInput(f"invalid URL {source[:200]!r}: {exc}") from None
        retrying = Retrying(
            retry=retry_if_exception_type(TransientError),
            stop=stop_after_attempt(self.attempts),
            wait=wait_random_exponential(multiplier=0.5, max=30),
            reraise=True,
        )
        return retrying(self._attempt, source, partial)

    # --- http ------------------------------------------------------------------------------
    def _attempt(self, url: str, partial: PartialDownload) -> Fetched:
        kept = partial.size()
        validators = partial.validators()
        if_range = validators.get("etag") or validators.get("last_modified")
        headers = {"Accept-Encoding": "identity"}  # byte offsets must mean file offsets
        if kept and validators.get("url") == url and if_range:
            headers |= {"Range": f"bytes={kept}-", "If-Range": if_range}
        else:
            partial.discard()
            kept = 0
        try:
            response = self._open(url, headers)
            try:
                return self._receive(url, response, partial, kept)
            finally:
                response.close()
        except httpx.TransportError as exc:  # connect/read errors, timeouts, cut connections
            raise TransientError(f"download of {url} interrupted: {exc!r}") from None

    def _receive(
        self, url: str, response: httpx.Response, partial: PartialDownload, kept: int
    ) -> Fetched:
        status = response.status_code
        if status == 416:  # our partial no longer fits the object
            partial.discard()
            raise TransientError(f"{url}: range not satisfiable, restarting")
        if status == 429 or status >= 500:
            self._honour_retry_after(response)
            raise TransientError(f"{url}: HTTP {status}")
        if status not in (200, 206):
            raise PoisonInput(f"{url}: HTTP {status} {response.reason_phrase}")
        if status == 206 and not response.headers.get("content-range", "").startswith(
            f"bytes {kept}-"
        ):
            partial.discard()
            raise TransientError(f"{url}: unexpected Content-Range, restarting")
        resumed_from = kept if status == 206 else 0  # 200: Range ignored or object changed
        length = response.headers.get("content-length")
        if length and resumed_from + int(length) > self.max_bytes:
            raise PoisonInput(f"{url}: {resumed_from + int(length)} bytes is over the size cap")
        partial.save_validators(
            {"url": url, **_validators(response)},
        )
        digest = _hash_prefix(partial.data, resumed_from)
        size = resumed_from
        with partial.data.open("r+b" if resumed_from else "wb") as out:
            out.seek(resumed_from)
            out.truncate()
            # No chunk size: httpx would buffer up to it, and lose that much on a cut.
            began = time.monotonic()
            for block in response.iter_raw():
                size += len(block)
                self._check_pace(url, size - resumed_from, time.monotonic() - began)
                if size > self.max_bytes:
                    partial.discard()
                    raise PoisonInput(f"{url}: over the size cap of {self.max_bytes} bytes")
                out.write(block)
                digest.update(block)
        return Fetched(digest.hexdigest(), size, resumed_from)

    def _open(self, url: str, headers: dict[str, str]) -> httpx.Response:
        """Send the request to a checked address, following (and re-checking) redirects."""
        for _ in range(MAX_REDIRECTS + 1):
            target = httpx.URL(url)
            request = pinned_request(self.client, self.guard, "GET", target, headers)
            response = self.client.send(request, stream=True)
            if response.status_code not in (301, 302, 303, 307, 308):
                return response
            location = response.headers.get("location")
            response.close()
            if not location:
                raise PoisonInput(f"{url}: redirect without a Location")
            try:
                url = str(target.join(location))
            except httpx.InvalidURL as exc:
                raise PoisonInput(f"refused redirect to an invalid URL: {exc}") from None
            if (scheme := urlsplit(url).scheme) not in ("http", "https"):
                raise PoisonInput(f"refused redirect to a {scheme[:20]}: URL (only http(s))")
        raise PoisonInput(f"more than {MAX_REDIRECTS} redirects")

    def _check_pace(self, url: str, received: int, seconds: float) -> None:
        """A server that trickles bytes never trips the read timeout; a minimum rate does."""
        if seconds > _PACE_GRACE_S and received / seconds < self.min_bytes_per_s:
            raise TransientError(
                f"{url}: {received / seconds:.0f} B/s after {seconds:.0f}s, "
                f"under the minimum of {self.min_bytes_per_s} B/s"
            )

    @staticmethod
    def _honour_retry_after(response: httpx.Response) -> None:
        value = response.headers.get("retry-after", "")
        if value.isdigit():
            time.sleep(min(float(value), _MAX_RETRY_AFTER_S))

    # --- local files ---------------------------------------------------------------------------
    def _local_path(self, source: str) -> Path | None:
        """The file a local source names, if it lies under a local source root. Reasons never
        name a server path: the caller knows what it submitted."""
        parts = urlsplit(source)
        if parts.scheme in ("http", "https"):
            return None
        if parts.scheme not in ("", "file"):
            return None  # refused by the scheme check in fetch()
        if not self.local_roots:
            raise PoisonInput(
                "local sources are off: this service fetches http(s) URLs only "
                "(DOCSTREAMS_LOCAL_SOURCE_ROOTS names the folders local files may come from)"
            )
        if parts.scheme == "file" and parts.netloc not in ("", "localhost"):
            raise PoisonInput("a file:// URL must name a local file (no host)")
        given = Path(unquote(parts.path) if parts.scheme == "file" else source)
        if not given.is_absolute():
            raise PoisonInput("a local source must be an absolute path or a file:// URL")
        try:
            # Symlinks and .. resolved first: a link inside a root pointing out of it is outside.
            path = given.resolve(strict=True)
        except (OSError, RuntimeError):  # missing, or a symlink loop
            raise PoisonInput("the local source does not exist") from None
        if not any(path.is_relative_to(root) for root in self.local_roots):
            raise PoisonInput("the local source is outside the folders local sources may come "
                              "from (DOCSTREAMS_LOCAL_SOURCE_ROOTS)")  # fmt: skip
        if not path.is_file():
            raise PoisonInput("the local source is not a regular file")
        return path

    def _copy_local(self, path: Path, partial: PartialDownload) -> Fetched:
        size = path.stat().st_size
        if size > self.max_bytes:
            raise PoisonInput(f"the local file's {size} bytes are over the size cap")
        partial.discard()
        digest = hashlib.sha256()
        with path.open("rb") as src, partial.data.open("wb") as out:
            while block := src.read(_CHUNK_BYTES):
                digest.update(block)
                out.write(block)
        return Fetched(digest.hexdigest(), size, 0)


def _validators(response: httpx.Response) -> dict[str, str]:
    found = {}
    etag = response.headers.get("etag")
    if etag and not etag.startswith("W/"):  # weak ETags cannot validate byte ranges
        found["etag"] = etag
    if last_modified := response.headers.get("last-modified"):
        found["last_modified"] = last_modified
    return found


def _hash_prefix(path: Path, length: int) -> hashlib._Hash:
    """sha256 state after the first ``length`` bytes already on disk (streamed, not loaded)."""
    digest = hashlib.sha256()
    if length:
        with path.open("rb") as fh:
            remaining = length
            while remaining and (block := fh.read(min(_CHUNK_BYTES, remaining))):
                digest.update(block)
                remaining -= len(block)
    return digest


__all__ = ["AddressGuard", "Fetched", "Fetcher", "pinned_request"]
