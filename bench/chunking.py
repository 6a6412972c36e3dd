"""The chunker's CPU per 1,000 pages, on real PDF text, without Kafka.

Reads the text of R's reference manual (Debian's r-doc-pdf, 25-page windows as the pipeline
plans them), then times only the chunker on those windows (process CPU time, best of
``--repeat``), for each embedder's tokenizer: ``openai`` (cl100k_base, bpe-openai's encoder, what
bench/run.py uses) and ``local`` (MiniLM's WordPiece). Also reports chunks, their tokens (mean
and max; the capacity is CHUNK_MAX_TOKENS, 200 by default) and the parser's CPU per 1,000 pages
on the same file, so the chunker's share can be read against it.

    .venv/bin/python bench/chunking.py [--pdf PATH] [--repeat 3]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson

from streams.adapters import extractors
from streams.adapters.embedders import Embedder, LocalMiniLM, OpenAIEmbedder
from streams.chunk import Chunker
from streams.extract import pages_of
from streams.messages import ChunkBatch, PageBatch
from streams.settings import Settings

FULLREFMAN = Path("/usr/share/R/doc/manual/fullrefman.pdf")
WINDOW_PAGES = 25


def windows(path: Path) -> tuple[list[PageBatch], float]:
    """The file's windows as PageBatches, and the parser's CPU seconds to read them."""
    count = extractors.pdf_page_count(path)
    total = -(-count // WINDOW_PAGES)
    batches, cpu = [], time.process_time()
    for n, first in enumerate(range(1, count + 1, WINDOW_PAGES)):
        last = min(first + WINDOW_PAGES - 1, count)
        pages = pages_of(extractors.pdf_window("pypdfium2", path, first, last, keep_mb=256))
        batches.append(PageBatch(tenant_id="bench", document_id="refman", version="a" * 64,
                                 window=n + 1, window_count=total, anchor=f"p{first}",
                                 fingerprint="f" * 32, pages=pages,
                                 content_type=extractors.PDF))  # fmt: skip
    return batches, time.process_time() - cpu


def chunk_all(embedder: Embedder, settings: Settings, batches: list[PageBatch], repeat: int
              ) -> dict[str, Any]:  # fmt: skip
    chunker = Chunker(embedder, settings.chunk_max_tokens, settings.chunk_overlap_tokens)
    chunker(batches[0])  # the tokenizer and its tables loaded outside the timing
    best, out = float("inf"), []
    for _ in range(repeat):
        cpu = time.process_time()
        out = [chunker(batch)[0] for batch in batches]
        best = min(best, time.process_time() - cpu)
    chunks = [c for batch in out if isinstance(batch, ChunkBatch) for c in batch.chunks]
    pages = sum(len(b.pages) for b in batches)
    return {
        "cpu_s": round(best, 2),
        "cpu_s_per_1000_pages": round(best / pages * 1000, 3),
        "chunks": len(chunks),
        "mean_tokens": round(sum(c.tokens for c in chunks) / len(chunks), 1),
        "max_tokens": max(c.tokens for c in chunks),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pdf", type=Path, default=FULLREFMAN)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not args.pdf.exists() and args.pdf == FULLREFMAN:
        subprocess.run(["apt-get", "install", "-y", "-q", "r-doc-pdf"], check=True)
    settings = Settings()
    batches, parser_cpu = windows(args.pdf)
    pages = sum(len(b.pages) for b in batches)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()  # fmt: skip
    result = {
        "commit": commit,
        "pdf": str(args.pdf),
        "pages": pages,
        "windows": len(batches),
        "parser_cpu_s_per_1000_pages": round(parser_cpu / pages * 1000, 3),
        "chunk_max_tokens": settings.chunk_max_tokens,
        "chunk_overlap_tokens": settings.chunk_overlap_tokens,
        "openai": chunk_all(OpenAIEmbedder(settings), settings, batches, args.repeat),
        "local": chunk_all(LocalMiniLM(), settings, batches, args.repeat),
    }
    print(orjson.dumps(result).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
