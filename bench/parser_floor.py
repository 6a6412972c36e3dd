"""What pdfium itself needs for the 1 GB PDF's 25-page windows, next to the extract stage's
parser child (issue 25, item 3: the extract process tree's memory).

Each mode reads every 25-page window of the file in order, in a fresh process of its own, and
reports that process's peak RSS (``ru_maxrss``: Python and the imports included, their share
given as ``start_mb``), where the peak was reached, and the seconds:

- ``pdfium-reopen``: a minimal pdfium program (Python + pypdfium2 alone) that opens the file
  for every window, reads the window's text and closes it: the least any pdfium reader holds
  for a window (the file's cross-reference table, its page list up to the window, the window's
  pages and their resources). The floor.
- ``pdfium-open``: the same program with one open document for the whole file (pdfium's caches
  of fonts and shared resources grow as long as a document is open).
- ``reader-keep-96-shuffled``: the default reader with the windows in a random order (seed 1),
  as the stage meets them from its 12 input partitions.
- ``reader-keep-K``: the extract stage's reader (``extractors.pdf_window`` with the parser
  child's settings: ``PDF_READER_KEEP_MB`` = K, the address-space close bound), in a process
  that has imported what the parser child imports.

    .venv/bin/python bench/parser_floor.py [--modes pdfium-reopen,reader-keep-96] [--seconds 900]

The PDF is bench/run.py's (built once, cached). Prints one JSON line per mode.
"""

from __future__ import annotations

import argparse
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson

WINDOW_PAGES = 25
MODES = ["pdfium-reopen", "pdfium-open", "reader-keep-0", "reader-keep-32", "reader-keep-96",
         "reader-keep-96-shuffled"]  # fmt: skip


def _current_mb() -> float:
    return int(Path("/proc/self/statm").read_bytes().split()[1]) * 4096 / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(mode: str, path: Path, seconds: float, close_above_mb: float) -> dict[str, Any]:
    """Runs in the child: one mode over the file's windows."""
    import pypdfium2 as pdfium

    read: Any
    if mode.startswith("pdfium-"):
        start_mb = _current_mb()
        total = len(pdfium.PdfDocument(path))
        kept = pdfium.PdfDocument(path) if mode == "pdfium-open" else None

        def read(first: int, last: int) -> int:
            document = kept if kept is not None else pdfium.PdfDocument(path)
            chars = 0
            for index in range(first - 1, last):
                page = document[index]
                text = page.get_textpage()
                chars += len(text.get_text_bounded())
                text.close()
                page.close()
            if kept is None:
                document.close()
            return chars
    else:
        from streams.adapters import extractors, sandbox

        sandbox._load_parsers()  # what the parser child imports before its first call
        start_mb = _current_mb()
        keep = int(mode.removesuffix("-shuffled").rsplit("-", 1)[1])
        total = extractors.pdf_page_count(path)

        def read(first: int, last: int) -> int:
            pages = extractors.pdf_window("pypdfium2", path, first, last, keep, close_above_mb)
            return sum(len(p.text) for p in pages)

    began = time.monotonic()
    pages = chars = 0
    peak_at, peak = 0, 0.0
    rise: list[tuple[float, int]] = []  # the windows that raised the peak most
    order = list(range(1, total + 1, WINDOW_PAGES))
    if mode.endswith("-shuffled"):  # as the stage meets them: from 12 partitions, interleaved
        random.Random(1).shuffle(order)  # noqa: S311  (a reproducible order, not a secret)
    for first in order:
        before = _peak_mb()
        last = min(first + WINDOW_PAGES - 1, total)
        chars += read(first, last)
        pages += last - first + 1
        if _peak_mb() > peak:
            peak, peak_at = _peak_mb(), first
        rise.append((_peak_mb() - before, first))
        if time.monotonic() - began > seconds:
            break
    elapsed = time.monotonic() - began
    steepest = sorted(rise, reverse=True)[:3]
    return {
        "mode": mode, "pages": pages, "of_pages": total, "seconds": round(elapsed, 1),
        "pages_per_s": round(pages / elapsed, 1), "chars": chars,
        "start_mb": round(start_mb, 1), "peak_rss_mb": round(peak, 1),
        "peak_reached_at_page": peak_at, "end_rss_mb": round(_current_mb(), 1),
        "steepest_windows": [[first, round(mb, 1)] for mb, first in steepest],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--seconds", type=float, default=900.0, help="per mode, then it stops")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "PATH", "CLOSE_ABOVE_MB"),
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args()
    if args.child:
        mode, path, close_above_mb = args.child
        result = measure(mode, Path(path), args.seconds, float(close_above_mb))
        print(orjson.dumps(result).decode(), flush=True)
        return
    from bench.run import ensure_packages, large_pdf
    from streams.extract import PDF_KEEP_SHARE_OF_CAP
    from streams.settings import Settings

    close_above_mb = Settings().parser_memory_mb * PDF_KEEP_SHARE_OF_CAP  # as the stage sets it
    ensure_packages()
    path = large_pdf()
    for mode in args.modes.split(","):
        if mode not in MODES:
            raise SystemExit(f"unknown mode {mode}: one of {MODES}")
        out = subprocess.run([sys.executable, __file__, "--seconds", str(args.seconds),
                              "--child", mode, str(path), str(close_above_mb)],
                             capture_output=True, text=True, check=False)  # fmt: skip
        if out.returncode != 0:
            raise SystemExit(f"{mode} failed:\n{out.stderr[-3000:]}")
        print(out.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
