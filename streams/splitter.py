"""Token-sized chunks of a window's text, from one tokenization of the window.

The window is tokenized once; where each token starts (a character offset) tells how far a chunk
may reach. Within that reach the chunk ends at its last blank line (a paragraph's or a page's
end: the pages of a window are joined by one, so a chunk that can end with its page does, and
its hits cite that page alone); without one, at the strongest break in the last half of its
reach: a line end, a sentence end, a space; failing those, anywhere in its reach, and failing
that, at the token where the reach ends. The next chunk starts at a word up to ``overlap``
tokens before the end, within the paragraph the chunk ended in. Each chunk's count is its own
(what it carries): the embedder counts the chunk as if encoded on its own, for OpenAI's BPE by
encoding only its two ends again (streams/adapters/openai_tokens.py); one that the edges of its
words push past the capacity is cut shorter.

Chunks are a function of the text from their start on, so an edit changes the chunks around it
and the chunks after it start again at the same breaks once a chunk ends at the same break as
before (in practice within a chunk or two of a paragraph end).

Before, semantic-text-splitter searched each chunk's end by tokenizing candidate chunks again
and again (several tokenizations of every window: 52 CPU-s of the chunk stage's 65 on the 1 GB
PDF, docs/benchmarks.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported where a window is split: the embed and index processes
    # import this module (through streams.apps) and must stay without numpy (tests/test_memory.py)
    import numpy as np
    import numpy.typing as npt

    TokenStarts = npt.NDArray[np.int64]

# Below a blank line, the breaks a chunk may end at, strongest first; a chunk ends before a
# separator, except after a sentence's punctuation.
PARAGRAPH = "\n\n"  # a blank line: a paragraph's end, and between the pages of a window
_BREAKS: tuple[tuple[tuple[str, int], ...], ...] = (
    (("\n", 0),),
    ((". ", 1), ("? ", 1), ("! ", 1)),
    ((" ", 0),),
)
_WORD_START = re.compile(r"(?<!\S)\S")  # a non-space at the start or after a space
_NOT_SPACE = re.compile(r"\S")


@dataclass(frozen=True)
class Piece:
    start: int  # character offset in the text
    text: str
    tokens: int  # counted on its own


class TokenSplitter:
    """Splits a text into chunks of at most ``capacity`` tokens with ``overlap``."""

    def __init__(
        self,
        token_starts: Callable[[str], TokenStarts],
        count_span: Callable[[str, TokenStarts, int, int], int],
        capacity: int,
        overlap: int,
    ) -> None:
        if capacity < 1 or not 0 <= overlap < capacity:
            raise ValueError(
                f"capacity {capacity} and overlap {overlap}: need 0 <= overlap < capacity"
            )
        self.token_starts, self.count_span = token_starts, count_span
        self.capacity, self.overlap = capacity, overlap

    def split(self, text: str) -> list[Piece]:
        import numpy as np

        starts = self.token_starts(text)
        pieces: list[Piece] = []
        begin = _next(_NOT_SPACE, text, 0)
        while begin < len(text):
            first = max(0, int(np.searchsorted(starts, begin, side="right")) - 1)
            room = self.capacity
            while True:
                reach = first + room
                limit = len(text) if reach >= len(starts) else max(int(starts[reach]), begin + 1)
                end = limit if limit >= len(text) else _break_before(text, begin, limit)
                piece = text[begin:end].rstrip()
                tokens = self.count_span(text, starts, begin, begin + len(piece))
                if tokens <= self.capacity or end - begin <= 1:
                    break
                room -= tokens - self.capacity  # the word edges counted more than the window did
            pieces.append(Piece(begin, piece, tokens))
            if end >= len(text):
                break
            begin = self._next_begin(text, starts, begin, end)
        return pieces

    def _next_begin(self, text: str, starts: TokenStarts, begin: int, end: int) -> int:
        """A word start up to ``overlap`` tokens before ``end``, after ``begin`` and within the
        paragraph (or page) the chunk ended in; else the first word at or after ``end`` (a chunk
        that ended with its paragraph has no overlap: the next begins a paragraph of its own)."""
        after = _next(_NOT_SPACE, text, end)
        if self.overlap == 0 or text.startswith(PARAGRAPH, end):
            return after
        import numpy as np

        back = int(np.searchsorted(starts, end, side="left")) - self.overlap
        if back < 0 or back >= len(starts):
            return after
        floor = text.rfind(PARAGRAPH, begin, end) + len(PARAGRAPH)  # the paragraph's start
        candidate = _next(_WORD_START, text, max(int(starts[back]), floor))
        return candidate if begin < candidate < end else after


def _next(pattern: re.Pattern[str], text: str, at: int) -> int:
    found = pattern.search(text, at)
    return found.start() if found else len(text)


def _break_before(text: str, begin: int, limit: int) -> int:
    """Where a chunk from ``begin`` that may not reach ``limit`` ends: its last blank line, else
    the strongest break in the last half of its reach, else the strongest anywhere in it, else
    ``limit``."""
    paragraph = text.rfind(PARAGRAPH, begin + 1, limit)
    if paragraph > begin:
        return paragraph
    half = begin + (limit - begin) // 2
    for low in (half, begin + 1):
        for level in _BREAKS:
            at = max(text.rfind(separator, low, limit) + keep for separator, keep in level)
            if at >= low:
                return at
    return limit
