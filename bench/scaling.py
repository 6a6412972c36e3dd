"""Scale-out of the extract stage: pages/s with 1, 2 and 3 extract processes, extract being the
only busy stage.

On a private stack, for each process count in turn (a topic prefix of its own each time, so the
same consumer group starts empty): the extract processes start and join their group; then the
download stage plans one real PDF (R's reference manual, Debian's r-doc-pdf, ~3,600 text pages)
into 25-page extract tasks, and the extract processes turn them into page batches. Nothing
consumes the page batches: chunk, embed, index, the tracker and Weaviate sit idle, so the cores
are the extract processes' (each a stage process and its parser child).

Pages/s runs from the first task's broker timestamp to the last WindowExtracted event's; the CPU
seconds are those of each extract process and its parser child (the whole tree). Efficiency is
pages/s per process against one process.

    .venv/bin/python bench/scaling.py [--processes 1 2 3] [--pages 0]

Prints one JSON line last (the rows in docs/deploy.md's sizing table come from it).
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

from bench.run import CACHE, FULLREFMAN, page_slice
from docstreams_dev.stack import Stack
from docstreams_dev.stack.ports import private_stack_settings
from streams.apps import app_processes
from streams.kafka_clients import admin_client, read_all
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


def _group_members(settings: Settings, group: str) -> int:
    found = admin_client(settings).describe_consumer_groups([group])[group].result(10)
    return sum(1 for m in found.members if m.assignment.topic_partitions)


def _tree_cpu_s(process: psutil.Process) -> float:
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def one_row(base: Settings, pdf: Path, processes: int, workdir: Path) -> dict[str, Any]:
    settings = base.model_copy(update={"topic_prefix": f"scale{processes}."})
    create_topics(admin_client(settings), settings)
    environment = {**os.environ, **as_environment(settings)}
    specs = app_processes(settings, ["download", "extract"], {"extract": processes}, environment)
    supervisor = Supervisor(specs)
    supervisor.start_all()
    try:
        group = f"{settings.topic_prefix}extract"
        deadline = time.monotonic() + 120
        while _group_members(settings, group) < processes:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{group}: {processes} members never got partitions")
            time.sleep(1)
        document = f"refman-{processes}"
        submit(settings, str(pdf), TENANT, document)
        planned: int | None = None
        done, pages = 0, 0
        extracted: list[dict[str, Any]] = []
        deadline = time.monotonic() + 3600
        while planned is None or done < planned:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{processes} processes: {done}/{planned} windows in an hour")
            time.sleep(5)
            records = read_all(settings, topic_name(settings, "events"), timeout_s=30)
            events = [orjson.loads(m.value() or b"{}") | {"_ts": m.timestamp()[1]} for m in records]
            mine = [e for e in events if e.get("document_id") == document]
            plans = [e for e in mine if e.get("type") == "DocumentPlanned"]
            extracted = [e for e in mine if e.get("type") == "WindowExtracted"]
            if plans:
                planned, pages = plans[-1]["window_count"], plans[-1]["pages"]
            done = len({e["window"] for e in extracted})
        tasks = read_all(settings, topic_name(settings, "extract-tasks"), timeout_s=30)
        first_task = min(m.timestamp()[1] for m in tasks)
        last_window = max(e["_ts"] for e in extracted)
        children = {name: psutil.Process(child.pid) for name, child in supervisor.children.items()}
        cpu = {name: round(_tree_cpu_s(p), 1) for name, p in children.items()}
    finally:
        supervisor.stop_all(60)
    seconds = (last_window - first_task) / 1000
    return {
        "processes": processes,
        "pages": pages,
        "windows": planned,
        "seconds": round(seconds, 1),
        "pages_per_s": round(pages / seconds, 1),
        "cpu_s": cpu,
        "extract_cpu_s": round(sum(v for k, v in cpu.items() if k.startswith("extract")), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--pages", type=int, default=0, help="only the first N pages (0: all)")
    args = parser.parse_args()
    pdf = source_pdf(args.pages)
    workdir = Path(tempfile.mkdtemp(prefix="docstreams-scaling-"))
    base = private_stack_settings(workdir / "stack", blob_dir=workdir / "blobs",
                                  local_source_roots=[pdf.parent])  # fmt: skip
    stack = Stack(base)
    stack.up()
    try:
        rows = [one_row(base, pdf, n, workdir) for n in args.processes]
    finally:
        stack.down()
    one = rows[0]["pages_per_s"] / rows[0]["processes"]
    for row in rows:
        row["speed_up"] = round(row["pages_per_s"] / rows[0]["pages_per_s"], 2)
        row["efficiency"] = round(row["pages_per_s"] / (row["processes"] * one), 2)
    result = {"pdf": pdf.name, "cores": len(os.sched_getaffinity(0)), "rows": rows}
    print(orjson.dumps(result).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
