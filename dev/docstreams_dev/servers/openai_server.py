"""A local OpenAI-compatible embeddings (and audio transcription) server for tests and benchmarks.

It answers POST /v1/embeddings like the OpenAI API: real vectors from the local model (or, in
``fast`` mode, deterministic vectors derived from each text's hash, to measure the pipeline
without model time), usage counted with cl100k_base, the API's error bodies, and
x-ratelimit-* headers from its own per-minute windows. It enforces OpenAI's request limits
(inputs per request, tokens per input, tokens per request) by refusing with 400, as OpenAI does.
Faults can be ordered: a status with headers for the next requests, an exhausted quota, a hang.
Every request is logged with its time, size and answer.
"""

from __future__ import annotations

import base64
import hashlib
import io
import tempfile
import threading
import time
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import default
from functools import cached_property
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from docstreams_dev.servers.http_server import run_server
from streams.adapters.embedders import LocalMiniLM
from streams.adapters.openai_tokens import tiktoken_encoding
from streams.adapters.transcribers import LocalWhisper
from streams.settings import Settings


@dataclass(frozen=True)
class Fault:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    code: str | None = None


@dataclass(frozen=True)
class Logged:
    at: float  # time.monotonic() when the request arrived
    inputs: int
    tokens: int
    status: int
    code: str | None = None


@dataclass
class EmbeddingsApi:
    fast: bool = False  # hash-derived vectors instead of the model's
    max_inputs: int = 2048
    max_tokens_per_input: int = 8192
    max_tokens_per_request: int = 300_000
    requests_per_minute: int = 10_000
    tokens_per_minute: int = 10_000_000
    fail_next: list[Fault] = field(default_factory=list)
    quota_exhausted: bool = False
    hang_s: float = 0.0
    floats_only: bool = False  # a server that ignores encoding_format=base64
    log: list[Logged] = field(default_factory=list)
    requests: list[list[str]] = field(default_factory=list)  # inputs of answered requests
    tokens_served: int = 0
    _window: list[tuple[float, int]] = field(default_factory=list)  # (at, tokens) this minute
    lock: threading.Lock = field(default_factory=threading.Lock)

    @cached_property
    def model(self) -> LocalMiniLM:
        return LocalMiniLM()

    @cached_property
    def transcriber(self) -> LocalWhisper:
        return LocalWhisper(Settings())

    @cached_property
    def encoding(self) -> Any:
        return tiktoken_encoding("cl100k_base")  # OpenAI's own tokenizer

    def count_tokens(self, text: str) -> int:
        return len(self.encoding.encode_ordinary(text))

    def vectors(self, texts: list[str], dimensions: int | None) -> np.ndarray:
        if not self.fast:
            vectors = np.asarray(self.model.embed(texts))
            return vectors[:, :dimensions] if dimensions else vectors
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            row = np.random.default_rng(seed).standard_normal(dimensions or 384)
            rows.append(row / np.linalg.norm(row))
        return np.asarray(rows, dtype=np.float32)

    def answer(self, request: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        """(status, body, headers) for one request; logs it."""
        received = time.monotonic()
        raw = request.get("input")
        texts: list[str] = [str(t) for t in raw] if isinstance(raw, list) else [str(raw)]
        counts = [self.count_tokens(t) for t in texts]
        with self.lock:
            status, body, headers, code = self._decide(texts, counts)
        if status == 200:
            vectors = self.vectors(texts, request.get("dimensions"))
            as_base64 = request.get("encoding_format") == "base64" and not self.floats_only
            data = [
                {"object": "embedding", "index": i,
                 "embedding": base64.b64encode(v.astype(np.float32).tobytes()).decode()
                 if as_base64 else v.tolist()}
                for i, v in enumerate(vectors)
            ]  # fmt: skip
            usage = {"prompt_tokens": sum(counts), "total_tokens": sum(counts)}
            body = {"object": "list", "data": data, "model": request["model"], "usage": usage}
        with self.lock:
            self.log.append(Logged(received, len(texts), sum(counts), status, code))
            if status == 200:
                self.requests.append(texts)
                self.tokens_served += sum(counts)
        return status, body, headers

    def _decide(
        self, texts: list[str], counts: list[int]
    ) -> tuple[int, dict[str, Any], dict[str, str], str | None]:
        if self.quota_exhausted:
            return _error(429, "You exceeded your current quota.", "insufficient_quota",
                          "insufficient_quota")  # fmt: skip
        if self.fail_next:
            fault = self.fail_next.pop(0)
            kind = "rate_limit_error" if fault.status == 429 else "server_error"
            status, body, _, code = _error(fault.status, f"simulated {fault.status}", kind,
                                           fault.code)  # fmt: skip
            return status, body, {**self._limit_headers(), **fault.headers}, code
        if len(texts) > self.max_inputs:
            return _error(400, f"'input' has {len(texts)} items, more than {self.max_inputs}",
                          "invalid_request_error", "too_many_inputs")  # fmt: skip
        if any(n > self.max_tokens_per_input for n in counts):
            return _error(400, f"an input is longer than {self.max_tokens_per_input} tokens",
                          "invalid_request_error", "input_too_long")  # fmt: skip
        if sum(counts) > self.max_tokens_per_request:
            return _error(400, f"{sum(counts)} tokens, more than {self.max_tokens_per_request} "
                          "per request", "invalid_request_error", "request_too_large")  # fmt: skip
        now = time.monotonic()
        self._window = [(at, n) for at, n in self._window if now - at < 60.0]
        used = sum(n for _, n in self._window)
        if len(self._window) >= self.requests_per_minute or used + sum(counts) > (
            self.tokens_per_minute
        ):
            wait = 60.0 - (now - self._window[0][0]) if self._window else 1.0
            status, body, _, code = _error(429, "Rate limit reached", "requests",
                                           "rate_limit_exceeded")  # fmt: skip
            return status, body, {**self._limit_headers(), "retry-after": f"{wait:.3f}"}, code
        self._window.append((now, sum(counts)))
        return 200, {}, self._limit_headers(), None

    def _limit_headers(self) -> dict[str, str]:
        now = time.monotonic()
        live = [(at, n) for at, n in self._window if now - at < 60.0]
        reset = f"{60.0 - (now - live[0][0]):.3f}s" if live else "0s"
        return {
            "x-ratelimit-limit-requests": str(self.requests_per_minute),
            "x-ratelimit-remaining-requests": str(self.requests_per_minute - len(live)),
            "x-ratelimit-reset-requests": reset,
            "x-ratelimit-limit-tokens": str(self.tokens_per_minute),
            "x-ratelimit-remaining-tokens": str(self.tokens_per_minute - sum(n for _, n in live)),
            "x-ratelimit-reset-tokens": reset,
        }

    def transcribe(
        self, content_type: str, raw: bytes
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """POST /v1/audio/transcriptions (multipart, a WAV file), answered as verbose_json with
        word and segment timestamps, transcribed by the local Whisper model."""
        received = time.monotonic()
        with self.lock:
            status, body, headers, code = self._decide([], [])
        if status == 200:
            fields = _multipart(content_type, raw)
            with wave.open(io.BytesIO(fields["file"])) as wav, tempfile.TemporaryDirectory() as d:
                pcm = Path(d) / "audio.pcm"
                pcm.write_bytes(wav.readframes(wav.getnframes()))
                utterances = self.transcriber.transcribe(pcm, 0.0)
            words = [{"word": w.text, "start": w.start_s, "end": w.end_s}
                     for u in utterances for w in u]  # fmt: skip
            texts = [" ".join(w.text for w in u) for u in utterances]
            pairs = enumerate(zip(utterances, texts, strict=True))
            segments = [{"id": i, "start": u[0].start_s, "end": u[-1].end_s, "text": t}
                        for i, (u, t) in pairs]  # fmt: skip
            body = {"task": "transcribe", "language": "english", "words": words,
                    "segments": segments, "text": " ".join(texts), "duration": 0.0}  # fmt: skip
        with self.lock:
            self.log.append(Logged(received, 1, 0, status, code))
        return status, body, headers

    def answered(self, status: int) -> list[Logged]:
        with self.lock:
            return [entry for entry in self.log if entry.status == status]


def _multipart(content_type: str, raw: bytes) -> dict[str, bytes]:
    message = BytesParser(policy=default).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw
    )
    fields: dict[str, bytes] = {}
    for part in message.iter_parts():
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            fields[str(part.get_param("name", header="content-disposition"))] = payload
    return fields


def _error(
    status: int, message: str, kind: str, code: str | None
) -> tuple[int, dict[str, Any], dict[str, str], str | None]:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return status, body, {}, code


class _Handler(BaseHTTPRequestHandler):
    api: EmbeddingsApi

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        if self.api.hang_s:
            time.sleep(self.api.hang_s)
        if self.path.endswith("/audio/transcriptions"):
            status, body, headers = self.api.transcribe(self.headers["Content-Type"], raw)
        else:
            status, body, headers = self.api.answer(orjson.loads(raw))
        data = orjson.dumps(body)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a hang it timed out on)


@contextmanager
def serving(api: EmbeddingsApi) -> Iterator[str]:
    """The API on a free loopback port; yields its base URL (…/v1), as `base_url` wants it."""
    with run_server(type("Handler", (_Handler,), {"api": api})) as url:
        yield f"{url}/v1"
