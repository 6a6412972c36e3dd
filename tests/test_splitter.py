"""The token splitter (streams/splitter.py) with both embedders' real tokenizers."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from streams.adapters.embedders import Embedder, LocalMiniLM, OpenAIEmbedder
from streams.settings import Settings
from streams.splitter import Piece, TokenSplitter

WORDS = ["tide", "harbour", "lantern", "déjà-vu", "naïve", "Straße", "12345", "3.14159", "x86_64",
         "e-mail", "Ünïcödé", "東京", "emoji🙂", "(see", "§4.2)", "—", "“quoted”", "don't", "...",
         "it's"]  # fmt: skip


@pytest.fixture(scope="module", params=["openai", "local"])
def embedder(request: pytest.FixtureRequest) -> Embedder:
    if request.param == "openai":
        return OpenAIEmbedder(Settings())
    return LocalMiniLM()


def _text(seed: int, paragraphs: int = 30) -> str:
    rng = random.Random(seed)
    out = []
    for _ in range(paragraphs):
        lines = []
        for _ in range(rng.randint(1, 6)):
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 25)))
            lines.append(words + rng.choice([".", "?", "!", "", ":"]))
        out.append("\n".join(lines))
    return "\n\n".join(out)


def _split(embedder: Embedder, text: str, capacity: int = 48, overlap: int = 8) -> list[Piece]:
    return TokenSplitter(embedder.token_starts, embedder.count_tokens, capacity, overlap).split(
        text
    )


def test_every_chunk_fits_the_capacity_and_carries_its_own_exact_count(embedder: Embedder) -> None:
    for seed in range(5):
        text = _text(seed)
        pieces = _split(embedder, text)
        assert len(pieces) > 10
        for piece in pieces:
            assert text[piece.start : piece.start + len(piece.text)] == piece.text
            assert piece.text == piece.text.strip() and piece.text
            assert piece.tokens == embedder.count_tokens(piece.text) <= 48


def test_chunks_cover_the_text_in_order_and_overlap_by_at_most_the_overlap(
    embedder: Embedder,
) -> None:
    text = _text(7)
    pieces = _split(embedder, text, overlap=8)
    starts = list(embedder.token_starts(text))
    covered = set[int]()
    for before, after in itertools.pairwise(pieces):
        end = before.start + len(before.text)
        assert before.start < after.start <= end + len(text[end : after.start])
        assert not text[end : after.start].strip()  # nothing skipped between them
        # Tokens of the window in the shared part (the first one may begin before it).
        shared = sum(after.start <= s < end for s in starts)
        assert shared <= 8
    for piece in pieces:
        covered.update(range(piece.start, piece.start + len(piece.text)))
    assert all(i in covered for i, c in enumerate(text) if not c.isspace())


def test_a_chunk_ends_at_its_last_paragraph_end_even_early_in_its_reach(
    embedder: Embedder,
) -> None:
    first = " ".join(["harbour"] * 8) + "."  # a page's last lines: a hit cites that page
    text = first + "\n\n" + " ".join(["lantern"] * 200)
    pieces = _split(embedder, text, capacity=48, overlap=0)
    assert pieces[0].text == first


def test_the_window_is_tokenized_once_and_each_chunk_counted_once(embedder: Embedder) -> None:
    calls: dict[str, int] = {"starts": 0, "counts": 0}

    def starts(text: str) -> Any:
        calls["starts"] += 1
        return embedder.token_starts(text)

    def count(text: str) -> int:
        calls["counts"] += 1
        return embedder.count_tokens(text)

    text = " ".join(f"Sentence {n} is about the tide." for n in range(400))
    pieces = TokenSplitter(starts, count, 64, 8).split(text)
    assert calls["starts"] == 1
    assert calls["counts"] == len(pieces) > 20


def test_token_starts_of_tiktoken_agree_with_tiktokens_own_offsets() -> None:
    embedder = OpenAIEmbedder(Settings())
    text = _text(3, paragraphs=5)
    encoding = embedder._encoding
    _, offsets = encoding.decode_with_offsets(encoding.encode_ordinary(text))
    assert list(embedder.token_starts(text)) == offsets
