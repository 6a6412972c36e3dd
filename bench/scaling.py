"""Scale-out of the extract stage: pages/s with 1, 2 and 3 extract processes, extract being the
only busy stage.

On a private stack, for each process count in turn (a topic prefix of its own each time, so the
group starts empty): the download stage alone plans ``--copies`` submissions of one real PDF
(R's reference manual from Debian's r-doc-pdf, 2,415 text pages) into 25-page extract tasks and
stops; then the extract processes start and turn the tasks into page batches. Nothing consumes
the page batches: chunk, embed, index, the tracker and Weaviate sit idle, so the cores are the
extract processes' (each a stage process and its parser child) and the broker's.

Pages/s counts the windows whose WindowExtracted event the broker stamped after every extract
process was ready (/readyz: producer up, partitions assigned), up to the last one. CPU seconds
are each extract process's with its parser child. Efficiency is pages/s per process against
one process.

    .venv/bin/python bench/scaling.py [--processes 1 2 3] [--copies 8] [--pages 0]

Prints one JSON line last (docs/benchmarks.md and docs/deploy.md's sizing table use it).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson
import psutil

from bench.processes import ready, wait_until
from bench.run import CACHE, FULLREFMAN, page_slice
from docstreams_dev.stack import Stack
from docstreams_dev.stack.ports import free_port_block, private_stack_settings
from streams.apps import app_processes
from streams.kafka_clients import admin_client, read_all
from streams.pipeline import APPS
from streams.producer import submit
from streams.settings import Settings, as_environment
from streams.supervisor import Supervisor
from streams.topics import create_topics, topic_name

TENANT = "scaling"


def source_pdf(pages: int) -> Path:
    if not FULLREFMAN.exists():
        raise SystemExit("needs Debian's r-doc-pdf and qpdf: apt-get install r-doc-pdf qpdf")
    if not pages:
        return FULLREFMAN
    CACHE.mkdir(parents=True, exist_ok=True)
    return page_slice(FULLREFMAN, 1, pages, f"fullrefman-1-{pages}.pdf")


def _tree_cpu_s(process: psutil.Process) -> float:
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def _events(settings: Settings, documents: set[str]) -> list[dict[str, Any]]:
    records = read_all(settings, topic_name(settings, "events"), timeout_s=30)
    events = [orjson.loads(m.value() or b"{}") | {"_ms": m.timestamp()[1]} for m in records]
    return [e for e in events if e.get("document_id") in documents]


def one_row(base: Settings, pdf: Path, processes: int, copies: int) -> dict[str, Any]:
    """Plan ``copies`` submissions of the PDF with the download stage alone, then start the
    extract processes; pages/s counts the windows extracted after all of them were ready."""
    ports = free_port_block(len(APPS) * processes)
    settings = base.model_copy(update={"topic_prefix": f"scale{processes}.", "metrics_port": ports})
    create_topics(admin_client(settings), settings)
    environment = {**os.environ, **as_environment(settings)}
    documents = {f"refman-{processes}-{n}" for n in range(copies)}
    download = Supervisor(app_processes(settings, ["download"], {}, environment))
    download.start_all()
    try:
        for document in sorted(documents):
            submit(settings, str(pdf), TENANT, document)
        wait_until("planning", lambda: sum(e["type"] == "DocumentPlanned"
                                      for e in _events(settings, documents)) == copies,
              600, every_s=3)  # fmt: skip
    finally:
        download.stop_all(60)
    planned = [e for e in _events(settings, documents) if e["type"] == "DocumentPlanned"]
    windows = sum(e["window_count"] for e in planned)
    extract = Supervisor(app_processes(settings, ["extract"], {"extract": processes}, environment))
    extract.start_all()
    try:
        extract_ports = [ports + APPS.index("extract") + len(APPS) * n for n in range(processes)]
        wait_until(
            "extract processes ready",
            lambda: all(ready(f"http://127.0.0.1:{p}") for p in extract_ports),
            120,
            0.2,
        )
        ready_ms = time.time() * 1000
        wait_until("extraction", lambda: sum(e["type"] == "WindowExtracted"
                                        for e in _events(settings, documents)) >= windows,
              3600, every_s=3)  # fmt: skip
        children = {name: psutil.Process(child.pid) for name, child in extract.children.items()}
        cpu = {name: round(_tree_cpu_s(p), 1) for name, p in children.items()}
    finally:
        extract.stop_all(60)
    extracted = [e for e in _events(settings, documents) if e["type"] == "WindowExtracted"]
    after = [e for e in extracted if e["_ms"] >= ready_ms]
    if not after:
        raise RuntimeError("every window was extracted before all processes were ready: "
                           "raise --copies")  # fmt: skip
    seconds = (max(e["_ms"] for e in after) - ready_ms) / 1000
    pages = sum(e["items"] for e in after)
    return {
        "processes": processes,
        "pages": pages,
        "pages_before_all_ready": sum(e["items"] for e in extracted) - pages,
        "windows": windows,
        "seconds": round(seconds, 1),
        "pages_per_s": round(pages / seconds, 1),
        "cpu_s": cpu,
        "cpu_s_per_1000_pages": round(
            sum(cpu.values()) * 1000 / sum(e["items"] for e in extracted), 2
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--pages", type=int, default=0, help="only the first N pages (0: all)")
    parser.add_argument("--copies", type=int, default=8, help="submissions of the PDF per row")
    args = parser.parse_args()
    pdf = source_pdf(args.pages)
    workdir = Path(tempfile.mkdtemp(prefix="docstreams-scaling-"))
    base = private_stack_settings(workdir / "stack", blob_dir=workdir / "blobs",
                                  local_source_roots=[pdf.parent])  # fmt: skip
    stack = Stack(base)
    stack.up()
    try:
        rows = [one_row(base, pdf, n, args.copies) for n in args.processes]
    finally:
        stack.down()
    one = rows[0]["pages_per_s"] / rows[0]["processes"]
    for row in rows:
        row["speed_up"] = round(row["pages_per_s"] / rows[0]["pages_per_s"], 2)
        row["efficiency"] = round(row["pages_per_s"] / (row["processes"] * one), 2)
    result = {"pdf": pdf.name, "copies": args.copies, "cores": len(os.sched_getaffinity(0)),
              "rows": rows}  # fmt: skip
    print(orjson.dumps(result).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
