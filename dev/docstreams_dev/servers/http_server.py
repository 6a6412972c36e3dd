"""A real local HTTP file server for download tests: honours Range/If-Range, logs every request,
and can misbehave on purpose (cut the body, ignore Range, change the object, redirect)."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Behaviour:
    files: dict[str, bytes] = field(default_factory=dict)
    cut_after: int | None = None  # first GET of a file stops after this many body bytes
    ignore_range: bool = False
    redirects: dict[str, str] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)  # path -> status, every time
    trickle: set[str] = field(default_factory=set)  # paths sent at 1 byte per second
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range)
    _cut_done: set[str] = field(default_factory=set)


def etag(data: bytes) -> str:
    return '"' + hashlib.sha256(data).hexdigest()[:16] + '"'


class _Handler(BaseHTTPRequestHandler):
    behaviour: Behaviour

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        b = self.behaviour
        b.requests.append((self.path, self.headers.get("Range")))
        if self.path in b.statuses:
            self.send_error(b.statuses[self.path])
            return
        if self.path in b.redirects:
            self.send_response(302)
            self.send_header("Location", b.redirects[self.path])
            self.end_headers()
            return
        data = b.files.get(self.path)
        if data is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        wanted = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if wanted and not b.ignore_range and (if_range is None or if_range == etag(data)):
            start = int(wanted.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("ETag", etag(data))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        body = data[start:]
        if self.path in b.trickle:
            for i in range(min(len(body), 120)):  # bounded: the client gives up long before
                time.sleep(1.0)
                try:
                    self.wfile.write(body[i : i + 1])
                    self.wfile.flush()
                except OSError:
                    return  # the client hung up
            return
        if b.cut_after is not None and self.path not in b._cut_done:
            b._cut_done.add(self.path)
            self.wfile.write(body[: b.cut_after])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)  # the connection drops mid-body
            return
        self.wfile.write(body)


@contextmanager
def run_server(
    handler: type[BaseHTTPRequestHandler], host: str = "127.0.0.1", port: int = 0
) -> Iterator[str]:
    """Serve ``handler`` on ``host`` (a loopback address) on ``port`` (0: a free one), in a
    thread; yields the base URL."""
    server = ThreadingHTTPServer((host, port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def serving(behaviour: Behaviour, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    with run_server(type("Handler", (_Handler,), {"behaviour": behaviour}), host, port) as url:
        yield url
