"""chunk: PageBatch -> ChunkBatch + WindowChunked.

The window's pages are joined and split by tokens of the embedding model (recursive, semantic
boundaries first, with overlap); each chunk keeps the pages it spans and a deterministic id,
so a replay or a re-submission yields the same ids.
"""

from __future__ import annotations

import bisect
import uuid

from semantic_text_splitter import TextSplitter

from streams.adapters.embedders import Embedder, make_embedder
from streams.messages import Chunk, ChunkBatch, Message, PageBatch, WindowChunked
from streams.pipeline import STAGE_SPECS, Stage
from streams.settings import Settings

# Fixed forever: chunk ids (and so Weaviate object ids) derive from it.
CHUNK_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "docstreams/chunk")
PAGE_SEPARATOR = "\n\n"


def chunk_id(tenant_id: str, document_id: str, version: str, window: int, index: int) -> str:
    return str(uuid.uuid5(CHUNK_NAMESPACE, f"{tenant_id}/{document_id}/{version}/{window}/{index}"))


class Chunker:
    def __init__(self, embedder: Embedder, max_tokens: int, overlap: int) -> None:
        self.embedder = embedder
        self.splitter: TextSplitter = embedder.splitter(max_tokens, overlap)

    def __call__(self, batch: PageBatch) -> list[Message]:
        pages = [p for p in batch.pages if p.text]
        text = PAGE_SEPARATOR.join(p.text for p in pages)
        starts, offset = [], 0  # character offset where each page's text begins
        for page in pages:
            starts.append(offset)
            offset += len(page.text) + len(PAGE_SEPARATOR)
        chunks = []
        for index, (start, piece) in enumerate(self.splitter.chunk_indices(text)):
            first = pages[bisect.bisect_right(starts, start) - 1]
            last = pages[bisect.bisect_right(starts, start + len(piece) - 1) - 1]
            chunks.append(
                Chunk(
                    id=chunk_id(
                        batch.tenant_id, batch.document_id, batch.version, batch.window, index
                    ),
                    index=index,
                    text=piece,
                    page_start=first.number,
                    page_end=last.number,
                    tokens=max(1, self.embedder.count_tokens(piece)),
                    start_s=first.start_s,  # transcript segments carry times
                    end_s=last.end_s,
                )
            )
        out = ChunkBatch(**batch.carried(), chunks=chunks)
        done = WindowChunked(**batch.window_identity(), items=len(chunks))
        return [out, done]


def make_stage(settings: Settings) -> Stage[PageBatch]:
    chunker = Chunker(
        make_embedder(settings), settings.chunk_max_tokens, settings.chunk_overlap_tokens
    )
    return Stage(STAGE_SPECS["chunk"], chunker)
