"""chunk: PageBatch -> ChunkBatch + WindowChunked.

The window's pages are joined and split by tokens of the embedding model, from one tokenization
of the window (streams/splitter.py: paragraph, line, sentence and word breaks, with overlap);
each chunk keeps the pages it spans. Its id derives from what
it is, not from where it falls in a version: the document, how it was built (fingerprint), its
window's anchor, its content key (text and pages or times), and its ordinal among identical
ones in the window. A replay yields the same ids. An edited version's chunks the edit did not
touch are the same chunks (the splitter re-synchronises past an edit), and the index reuses
their objects by content key.
"""

from __future__ import annotations

import bisect
import hashlib
import uuid
from collections import Counter

from streams.adapters.embedders import Embedder, make_embedder
from streams.messages import Chunk, ChunkBatch, Message, PageBatch, WindowChunked, content_key_of
from streams.pipeline import STAGE_SPECS, Stage
from streams.settings import Settings
from streams.splitter import PARAGRAPH, TokenSplitter

# Fixed forever: chunk ids (and so Weaviate object ids) derive from it.
CHUNK_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "docstreams/chunk")
_NAMESPACE_BYTES = CHUNK_NAMESPACE.bytes
PAGE_SEPARATOR = PARAGRAPH  # a blank line: a chunk that can end with its page does


def chunk_id(batch: PageBatch, key: str, ordinal: int) -> str:
    """uuid5 of the document, how it was built, the window's anchor, the chunk's content key and
    its ordinal among chunks of the window with the same key."""
    # Windows planned before anchors existed: the window number stands in for it.
    anchor = batch.anchor or f"w{batch.window}.{batch.version}"
    name = f"{batch.tenant_id}/{batch.document_id}/{batch.fingerprint}/{anchor}/{key}/{ordinal}"
    return _chunk_uuid5(name)


def _chunk_uuid5(name: str) -> str:
    """``str(uuid.uuid5(CHUNK_NAMESPACE, name))`` without the UUID object (a third of the time,
    for every chunk): RFC 4122's SHA-1 name-based UUID, version and variant bits set."""
    digest = bytearray(
        hashlib.sha1(_NAMESPACE_BYTES + name.encode(), usedforsecurity=False).digest()[:16]
    )
    digest[6] = digest[6] & 0x0F | 0x50  # version 5
    digest[8] = digest[8] & 0x3F | 0x80  # the RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class Chunker:
    def __init__(self, embedder: Embedder, max_tokens: int, overlap: int) -> None:
        capacity = embedder.chunk_capacity(max_tokens)
        self.splitter = TokenSplitter(embedder.token_starts, embedder.count_span, capacity,
                                      min(overlap, capacity // 2))  # fmt: skip

    def __call__(self, batch: PageBatch) -> list[Message]:
        pages = [p for p in batch.pages if p.text]
        text = PAGE_SEPARATOR.join(p.text for p in pages)
        starts, offset = [], 0  # character offset where each page's text begins
        for page in pages:
            starts.append(offset)
            offset += len(page.text) + len(PAGE_SEPARATOR)
        chunks = []
        seen: Counter[str] = Counter()
        for index, piece in enumerate(self.splitter.split(text)):
            first = pages[bisect.bisect_right(starts, piece.start) - 1]
            last = pages[bisect.bisect_right(starts, piece.start + len(piece.text) - 1) - 1]
            key = content_key_of(piece.text, first.number, last.number, first.start_s, last.end_s)
            chunks.append(
                Chunk(
                    id=chunk_id(batch, key, seen[key]),
                    index=index,
                    text=piece.text,
                    page_start=first.number,
                    page_end=last.number,
                    tokens=max(1, piece.tokens),
                    start_s=first.start_s,  # transcript segments carry times
                    end_s=last.end_s,
                )
            )
            seen[key] += 1
        out = ChunkBatch(**batch.carried(), chunks=chunks)
        done = WindowChunked(**batch.window_identity(), items=len(chunks))
        return [out, done]


def make_stage(settings: Settings) -> Stage[PageBatch]:
    chunker = Chunker(
        make_embedder(settings), settings.chunk_max_tokens, settings.chunk_overlap_tokens
    )
    return Stage(STAGE_SPECS["chunk"], chunker)
