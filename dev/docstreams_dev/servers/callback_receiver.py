"""A real HTTP endpoint on 127.0.0.1 that receives docstreams callbacks and records them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

import orjson

from docstreams_dev.servers.http_server import run_server


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, object]:
        loaded: dict[str, object] = orjson.loads(self.body)
        return loaded


@dataclass
class Receiver:
    received: list[Received] = field(default_factory=list)
    fail_first: int = 0  # answer 503 to this many requests first (a receiver that is down)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def called_back(self, document_id: str) -> bool:
        return bool(self.for_document(document_id))

    def for_document(self, document_id: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.json()["document_id"] == document_id]


@contextmanager
def receiving(receiver: Receiver) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            if len(body) != length:  # the sender died mid-request (a tracker kill): no delivery
                return
            with receiver.lock:
                if receiver.fail_first > 0:
                    receiver.fail_first -= 1
                    status = 503
                else:
                    receiver.received.append(Received(self.path, dict(self.headers), body))
                    status = 204
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    with run_server(Handler) as url:
        yield f"{url}/hooks/docstreams"
