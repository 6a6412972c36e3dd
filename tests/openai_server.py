"""A local OpenAI-compatible embeddings server for tests: real vectors from the local model,
the API's JSON shapes and error bodies, and a log of what each request carried."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

import numpy as np
import orjson

from streams.adapters.embedders import LocalMiniLM
from tests.http_server import run_server


@dataclass
class EmbeddingsApi:
    model: LocalMiniLM = field(default_factory=LocalMiniLM)
    requests: list[list[str]] = field(default_factory=list)
    fail_next: list[tuple[int, dict[str, str]]] = field(default_factory=list)  # (status, headers)


class _Handler(BaseHTTPRequestHandler):
    api: EmbeddingsApi

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _reply(self, status: int, body: dict[str, object], headers: dict[str, str]) -> None:
        data = orjson.dumps(body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        request = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.api.fail_next:
            status, headers = self.api.fail_next.pop(0)
            error = {"message": f"simulated {status}", "type": "rate_limit_error", "code": None}
            self._reply(status, {"error": error}, headers)
            return
        texts = request["input"] if isinstance(request["input"], list) else [request["input"]]
        self.api.requests.append(texts)
        vectors = self.api.model.embed(texts)
        as_base64 = request.get("encoding_format") == "base64"
        data = [
            {"object": "embedding", "index": i,
             "embedding": base64.b64encode(v.astype(np.float32).tobytes()).decode()
             if as_base64 else v.tolist()}
            for i, v in enumerate(vectors)
        ]  # fmt: skip
        tokens = sum(self.api.model.count_tokens(t) for t in texts)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        self._reply(200, {"object": "list", "data": data, "model": request["model"],
                          "usage": usage}, {})  # fmt: skip


@contextmanager
def serving(api: EmbeddingsApi) -> Iterator[str]:
    """The API on a free loopback port; yields its base URL (…/v1), as `base_url` wants it."""
    with run_server(type("Handler", (_Handler,), {"api": api})) as url:
        yield f"{url}/v1"
