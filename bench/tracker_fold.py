"""The tracker's CPU per event of a large document, without Kafka: the state read, folded and
written back as streams/tracker/documents.py does, for every event of one document of
``--windows`` windows (1,066: the 1 GB PDF's 26,646 pages in 25-page windows).

Events per window: WindowExtracted (with its anchor and digest), WindowChunked, WindowEmbedded,
WindowIndexed; the state grows with the windows done, so a later event costs more. Measures
process CPU time of the whole sequence (streams.tracker.documents.Documents on a dict instead of
faust's table) and the state's final size. What it leaves out: the
changelog write of each state through aiokafka, faust's own per-event work and the HTTP API.

    .venv/bin/python bench/tracker_fold.py [--windows 1066]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson

from streams.fold import TrackedMessage, fold
from streams.messages import (
    DocumentPlanned,
    DocumentSubmitted,
    WindowChunked,
    WindowEmbedded,
    WindowExtracted,
    WindowIndexed,
    utc_now,
)
from streams.tracker.documents import Documents


def events(windows: int) -> list[TrackedMessage]:
    ids: dict[str, Any] = {"tenant_id": "bench", "document_id": "large"}
    version = "1" * 64
    request = DocumentSubmitted(**ids, source="https://example.org/large.pdf")
    out: list[TrackedMessage] = [
        request,
        DocumentPlanned(**ids, stage="download", version=version, window_count=windows,
                        pages=windows * 25, bytes=2**30, content_type="application/pdf",
                        submitted_at=request.submitted_at),
    ]  # fmt: skip
    window: dict[str, Any] = {**ids, "version": version, "window_count": windows}
    for w in range(windows):
        digest = hashlib.sha256(str(w).encode()).hexdigest()[:32]
        out += [
            WindowExtracted(**window, window=w, items=25, anchor=f"p{w * 25 + 1}", digest=digest),
            WindowChunked(**window, window=w, items=90),
            WindowEmbedded(**window, window=w, items=90, tokens=16000),
            WindowIndexed(**window, window=w, items=90),
        ]
    return out


class _Table:
    """Where Documents keeps states: a dict, and the bytes a changelog would have been sent."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.written = 0

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    async def send_changelog(self, partition: int | None, key: str, value: bytes) -> None:
        self.written += len(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=1066)
    args = parser.parse_args()
    sequence = events(args.windows)
    table = _Table()
    documents = Documents(cast(Any, None), table, {}, cast(Any, None))
    key = "bench/large"

    async def run() -> None:
        for event in sequence:
            before = documents.get(key)
            folded = fold(before, event, utc_now())
            if folded.changed:
                await documents.write(key, folded.state)

    cpu = time.process_time()
    asyncio.run(run())
    cpu = time.process_time() - cpu
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()  # fmt: skip
    print(orjson.dumps({
        "commit": commit, "windows": args.windows, "events": len(sequence),
        "cpu_s": round(cpu, 2), "ms_per_event": round(cpu / len(sequence) * 1000, 3),
        "final_state_kb": round(len(table.data[key]) / 1024, 1),
        "changelog_mb_written": round(table.written / 2**20, 1),
    }).decode())  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
