"""Each app's HTTP endpoints: /metrics (Prometheus), /healthz (live), /readyz (ready), and
POST /resume (a paused stage tries again now, e.g. after an operator topped up the quota)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import orjson
from prometheus_client import make_wsgi_app

_metrics_app = make_wsgi_app()


@dataclass
class Health:
    """What the runner reports about itself; read by the probes."""

    stall_after_s: float
    last_loop: float = field(default_factory=time.monotonic)
    producer_ready: bool = False
    assigned: list[int] | None = None  # None until the group's first assignment
    paused_because: str | None = None
    # Set by POST /resume: a paused stage tries again now instead of at its next probe.
    resume_requested: threading.Event = field(default_factory=threading.Event)
    # When a call that must return soon is overdue (see bounded).
    call_deadline: float | None = None
    # While the stage works on a batch (see working).
    work_deadline: float | None = None

    def beat(self) -> None:
        self.last_loop = time.monotonic()

    @contextmanager
    def bounded(self, seconds: float) -> Iterator[None]:
        """Not live if the call inside takes longer than ``seconds``: for a call that can block
        past its own timeout, so the process is replaced sooner than ``stall_after_s``."""
        self.call_deadline = time.monotonic() + seconds
        try:
            yield
        finally:
            self.call_deadline = None

    @contextmanager
    def working(self, seconds: float) -> Iterator[None]:
        """Live for up to ``seconds`` while the stage works: a long batch on a loaded machine is
        progress, not a stall (the 120 s stall bound replaced busy embed and extract processes
        mid-batch in the size chaos run, and their work was done again). The stage's outside
        calls have timeouts of their own; ``seconds`` is the consumer's max.poll.interval, past
        which the group would drop this member anyway."""
        self.work_deadline = time.monotonic() + seconds
        try:
            yield
        finally:
            self.work_deadline = None
            self.beat()

    def live(self) -> bool:
        now = time.monotonic()
        if self.call_deadline is not None and now > self.call_deadline:
            return False
        if self.work_deadline is not None:
            return now < self.work_deadline
        return now - self.last_loop < self.stall_after_s

    def ready(self) -> bool:
        return (
            self.live()
            and self.producer_ready
            and self.assigned is not None
            and self.paused_because is None
        )

    def report(self) -> dict[str, Any]:
        return {
            "live": self.live(),
            "ready": self.ready(),
            "producer_ready": self.producer_ready,
            "assigned_partitions": self.assigned,
            "paused_because": self.paused_because,
            "seconds_since_loop": round(time.monotonic() - self.last_loop, 1),
        }


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(health: Health, host: str, port: int) -> WSGIServer:
    """Start the endpoints in a daemon thread; returns the server (``shutdown()`` stops it)."""

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path == "/resume":
            if environ.get("REQUEST_METHOD") != "POST":
                start_response("405 Method Not Allowed", [("Allow", "POST")])
                return [b""]
            health.resume_requested.set()
            start_response("202 Accepted", [("Content-Type", "application/json")])
            return [orjson.dumps({"resume_requested": True, "paused": health.paused_because})]
        if path in ("/healthz", "/readyz"):
            ok = health.live() if path == "/healthz" else health.ready()
            start_response("200 OK" if ok else "503 Service Unavailable",
                           [("Content-Type", "application/json")])  # fmt: skip
            return [orjson.dumps(health.report())]
        return _metrics_app(environ, start_response)

    server = make_server(host, port, app, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True, name="health").start()
    return server
