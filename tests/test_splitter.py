"""The token splitter (streams/splitter.py) with both embedders' real tokenizers."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from streams.adapters.embedders import Embedder, LocalMiniLM, OpenAIEmbedder
from streams.adapters.openai_tokens import encoding_name, tiktoken_encoding
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
    return TokenSplitter(embedder.token_starts, embedder.count_span, capacity, overlap).split(text)


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

    def count(text: str, starts: Any, begin: int, end: int) -> int:
        calls["counts"] += 1
        return embedder.count_span(text, starts, begin, end)

    text = " ".join(f"Sentence {n} is about the tide." for n in range(400))
    pieces = TokenSplitter(starts, count, 64, 8).split(text)
    assert calls["starts"] == 1
    assert calls["counts"] == len(pieces) > 20


class _EncodedCharacters:
    """The embedder's tokenizer, counting the characters it is asked to encode or count."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer, self.name, self.characters = tokenizer, tokenizer.name, 0

    def encode(self, text: str) -> list[int]:
        self.characters += len(text)
        return list(self.tokenizer.encode(text))

    def count(self, text: str) -> int:
        self.characters += len(text)
        return int(self.tokenizer.count(text))


def test_openai_tokenizer_counts_a_chunk_by_encoding_only_its_ends_again() -> None:
    embedder = OpenAIEmbedder(Settings())
    text = _text(11)
    spy = _EncodedCharacters(embedder._tokenizer)
    embedder.__dict__["_tokenizer"] = spy  # the cached property's value
    pieces = TokenSplitter(embedder.token_starts, embedder.count_span, 200, 20).split(text)
    del embedder.__dict__["_tokenizer"]
    assert len(pieces) > 10
    assert all(p.tokens == embedder.count_tokens(p.text) for p in pieces)
    chunked = sum(len(p.text) for p in pieces)
    # The window once; for the counts, a few words at each chunk's two ends (a count of every
    # chunk on its own would encode all of ``chunked`` again).
    assert spy.characters - len(text) < chunked * 0.25


def _awkward_text(rng: random.Random) -> str:
    # Words, runs of spaces, tabs, line ends, digits, marks, no-break and ideographic spaces,
    # separators Python counts as spaces and tiktoken does not, special tokens' text.
    parts = [*WORDS, "  ", "\t", "\n", "\n\n", "\r\n", " ", "'s", "²", "Ⅻ", "\u00a0", "\x1c",
             "a\u0301", "\u200b", "'LL", "ABC", "$$", "\u3000", "١٢٣", "🙂🙂", "<|endoftext|>",
             "\ud7ff", "ǅ", "ﬁ", "\U0001d400"]  # fmt: skip
    return "".join(rng.choice(parts) + rng.choice([" ", "", "  ", "\n", " "])
                   for _ in range(rng.randint(1, 120)))  # fmt: skip


@pytest.mark.parametrize("model", ["text-embedding-3-small", "gpt-4o"])  # cl100k_base, o200k_base
def test_openai_span_counts_equal_openais_tiktoken_encoding_the_span_on_its_own(
    model: str,
) -> None:
    # Spans cut anywhere; the expected count is tiktoken's (OpenAI's own tokenizer), so this
    # also holds the faster encoder the embedder uses to tiktoken's tokens.
    embedder = OpenAIEmbedder(Settings(openai_model=model))
    reference = tiktoken_encoding(encoding_name(model))
    rng = random.Random(5)
    checked = 0
    for _ in range(400):
        text = _awkward_text(rng)
        assert embedder._tokenizer.encode(text) == reference.encode_ordinary(text), text
        starts = embedder.token_starts(text)
        for _ in range(5):
            begin = rng.randrange(len(text))
            end = rng.randint(begin + 1, len(text))
            expected = len(reference.encode_ordinary(text[begin:end]))
            assert embedder.count_tokens(text[begin:end]) == expected, text[begin:end]
            assert embedder.count_span(text, starts, begin, end) == expected, text[begin:end]
            checked += 1
    assert checked == 2000


@pytest.mark.parametrize("model", ["text-embedding-3-small", "gpt-4o"])
def test_token_starts_agree_with_tiktokens_own_offsets(model: str) -> None:
    embedder = OpenAIEmbedder(Settings(openai_model=model))
    # Special tokens' text is ordinary text in a document: counted as encode_ordinary does.
    text = (
        _text(3, paragraphs=5)
        + " <|endoftext|> and <|fim_prefix|> "
        + _awkward_text(random.Random(8))
    )
    reference = tiktoken_encoding(encoding_name(model))
    _, offsets = reference.decode_with_offsets(reference.encode_ordinary(text))
    assert list(embedder.token_starts(text)) == offsets
