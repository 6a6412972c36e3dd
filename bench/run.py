"""Performance: a 1 GB PDF end to end, next to the PDF library's own speed; small-document
latency; per-stage memory.

- large: a PDF of >= 1 GiB and >= 20,000 pages, merged by qpdf from Debian's documentation
  PDFs (TeX Live's PSTricks manuals, heavy with vector graphics, and R's manuals), cached in
  ~/.cache/docstreams/bench. It is ingested through every app (`run all`, each its own process)
  on a private local stack, the embed stage paying the local OpenAI-compatible test server in
  its fast mode (hash vectors), so that the pipeline's own overhead is what is measured.
- raw: the same file's text extracted in one process with no pipeline, per backend: the whole
  file through one open document (the library's limit); with --raw-windows, pypdfium2 also in
  the pipeline's 25-page windows with the extract stage's bounded reader (PDF_READER_KEEP_MB).
  pypdf is ~10x slower: it gets --pypdf-seconds.
- local embedder: a 300-page document through every app with EMBEDDER=local; chunks/s.
- small: 20 different 10-page PDFs submitted one after another (local embedder); latency from
  submit to DocumentCompleted (indexed: searchable), p50/p95.
- memory: each process's RSS sampled from /proc every 0.5 s: the five stages, the tracker,
  the stages' parser children, the Kafka broker and Weaviate.

    .venv/bin/python bench/run.py [--extract-replicas N] [--skip-raw] [--skip-small]

Prints one JSON line last; appends a dated row to docs/benchmarks.md and draws
docs/bench/large-<replicas>x.png (RSS over time per process, pages indexed per second).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson
import psutil

from bench.processes import Memory, counter_by_label, stage_transactions
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path.home() / ".cache" / "docstreams" / "bench"
LARGE_MIN_PAGES = 20_000
LARGE_MIN_BYTES = 2**30
# Debian packages whose PDFs make the corpus (installed with apt-get when missing), and qpdf.
APT_PACKAGES = ["texlive-pstricks-doc", "r-doc-pdf", "qpdf"]
SOURCE_DIRS = [Path("/usr/share/doc/texlive-doc"), Path("/usr/share/R/doc/manual")]
FULLREFMAN = Path("/usr/share/R/doc/manual/fullrefman.pdf")
TENANT = "bench"
WINDOW_PAGES = 25


# --- corpus --------------------------------------------------------------------------------
def ensure_packages() -> None:
    missing = [p for p in APT_PACKAGES if not _installed(p)]
    if not missing:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends",
                    *missing], check=True, env=env)  # fmt: skip


def _installed(package: str) -> bool:
    found = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package],
                           capture_output=True, text=True)  # fmt: skip
    return "install ok installed" in found.stdout


def _page_count(path: Path) -> int:
    from streams.adapters.extractors import pdf_page_count

    return pdf_page_count(path)


def large_pdf() -> Path:
    """The merged PDF (built once, ~70 s): every source PDF in turn, round after round, each
    round through its own file names so that qpdf copies the pages instead of sharing them."""
    target = CACHE / "large.pdf"
    if target.exists():
        return target
    sources = []
    for folder in SOURCE_DIRS:
        for path in sorted(folder.rglob("*.pdf")):
            if path.name == "refman.pdf":  # the same file as fullrefman.pdf
                continue
            with contextlib.suppress(Exception):  # a few example files are not readable PDFs
                sources.append((path, _page_count(path), path.stat().st_size))
    if not sources:  # else the loop below would never reach the size
        raise RuntimeError(f"no source PDFs in {SOURCE_DIRS}: run ensure_packages() first")
    links = CACHE / "large-parts"
    shutil.rmtree(links, ignore_errors=True)
    links.mkdir(parents=True)
    parts, pages, size, round_ = [], 0, 0, 0
    while pages < LARGE_MIN_PAGES or size < LARGE_MIN_BYTES:
        for i, (path, count, length) in enumerate(sources):
            link = links / f"r{round_}-{i}.pdf"
            link.symlink_to(path)
            parts.append(str(link))
            pages, size = pages + count, size + length
            if pages >= LARGE_MIN_PAGES and size >= LARGE_MIN_BYTES:
                break
        round_ += 1
    partial = target.with_suffix(".partial")
    subprocess.run(["qpdf", "--no-warn", "--warning-exit-0", "--keep-files-open=n", "--empty",
                    "--pages", *parts, "--", str(partial)], check=True)  # fmt: skip
    partial.rename(target)
    shutil.rmtree(links)
    return target


def page_slice(source: Path, first: int, last: int, name: str) -> Path:
    target = CACHE / name
    if not target.exists():
        subprocess.run(["qpdf", "--no-warn", "--warning-exit-0", "--empty", "--pages",
                        str(source), f"{first}-{last}", "--", str(target)], check=True)  # fmt: skip
    return target


# --- raw extraction (each in a process of its own, for its own peak RSS) --------------------
def raw(backend: str, mode: str, path: Path, seconds: float) -> dict[str, Any]:
    """Run in a child: ``python bench/run.py --raw BACKEND MODE PATH SECONDS``."""
    out = subprocess.run(
        [sys.executable, __file__, "--raw", backend, mode, str(path), str(seconds)],
        capture_output=True, text=True,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"raw {backend} {mode} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = orjson.loads(out.stdout.strip().splitlines()[-1])
    print(orjson.dumps(result).decode(), flush=True)
    return result


def _raw_child(backend: str, mode: str, path: Path, seconds: float) -> dict[str, Any]:
    from streams.adapters import extractors

    kind = extractors.PDF_BACKENDS[backend]
    total = _page_count(path)
    keep = Settings().pdf_reader_keep_mb
    if mode == "whole":  # one open document, every page: the library's own limit
        document = kind.open(path)

        def read(first: int, last: int) -> list[Any]:
            return kind.pages(document, first, last)
    else:  # the extract stage's way: the reader kept under PDF_READER_KEEP_MB

        def read(first: int, last: int) -> list[Any]:
            return extractors.pdf_window(backend, path, first, last, keep)

    began = time.monotonic()
    pages = chars = 0
    for first in range(1, total + 1, WINDOW_PAGES):
        window = read(first, min(first + WINDOW_PAGES - 1, total))
        pages, chars = pages + len(window), chars + sum(len(p.text) for p in window)
        if time.monotonic() - began > seconds:
            break
    if mode == "whole":
        kind.close(document)
    elapsed = time.monotonic() - began
    return {"backend": backend, "mode": mode, "pages": pages, "of_pages": total,
            "seconds": round(elapsed, 1), "pages_per_s": round(pages / elapsed, 1),
            "chars": chars,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            **({"keep_mb": keep} if mode == "windows" else {})}  # fmt: skip


# --- memory sampling -------------------------------------------------------------------------
SERIES = ["download", "extract", "chunk", "embed", "index", "tracker", "kafka", "weaviate"]


# --- pipeline runs ---------------------------------------------------------------------------
@contextlib.contextmanager
def apps(settings: Settings, log: Path, replicas: int = 1) -> Iterator[psutil.Process]:
    from docstreams_dev.apps import running_apps

    with running_apps(settings, log, replicas={"extract": replicas}) as supervisor:
        _wait_for_groups(supervisor, replicas)
        yield supervisor


def _wait_for_groups(supervisor: psutil.Process, replicas: int, timeout_s: float = 60) -> None:
    """Every app process started and done importing (their first RSS plateau), so the timed
    run measures processing, not start-up."""
    expected = 6 + replicas - 1
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(supervisor.children()) >= expected:
            break
        time.sleep(0.5)
    time.sleep(15)  # imports, Kafka group joins (each app logs "assigned" well within this)


def ingest(settings: Settings, path: Path, document_id: str, timeout_s: float,
           on_update: Any = None) -> tuple[float, Any]:  # fmt: skip
    from streams.producer import submit
    from streams.progress import follow

    began = time.monotonic()
    request = submit(settings, str(path), TENANT, document_id)
    progress = follow(settings, TENANT, document_id, request.submitted_at, timeout_s,
                      on_update or (lambda _: None))  # fmt: skip
    seconds = time.monotonic() - began
    if progress.completed is None:
        raise RuntimeError(f"{document_id} did not complete: {progress.failure}")
    return seconds, progress


def profile(supervisor: psutil.Process, settings: Settings, workdir: Path, after_s: float,
            seconds: int = 30) -> dict[str, list[str]]:  # fmt: skip
    """The hot spots, ``after_s`` into the run for ``seconds``: py-spy (native frames too) on
    the extract parser child and the chunk stage, Go's pprof on Weaviate. Top frames by own
    samples; the full reports are left in ~/.cache/docstreams/bench/profile-*.txt."""
    time.sleep(after_s)
    targets = {}
    for proc in supervisor.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            cmd = proc.cmdline()
            if cmd[-1:] == ["chunk"]:
                targets["chunk"] = proc.pid
            elif "--multiprocessing-fork" in cmd and proc.parent().cmdline()[-1] == "extract":  # type: ignore[union-attr]
                targets["extract-parser"] = proc.pid
    spies = {
        name: subprocess.Popen(
            [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(seconds),
                "--native",
                "--format",
                "raw",
                "--output",
                str(workdir / f"{name}.folded"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in targets.items()
    }
    import httpx

    pprof = workdir / "weaviate.pprof"
    url = f"http://127.0.0.1:{settings.weaviate_pprof_port}/debug/pprof/profile?seconds={seconds}"
    pprof.write_bytes(httpx.get(url, timeout=seconds + 30).content)
    tops: dict[str, list[str]] = {}
    for name, spy in spies.items():
        spy.wait(seconds + 60)
        tops[name] = _folded_top(workdir / f"{name}.folded")
    binary = CACHE.parent / "weaviate" / settings.weaviate_version / "weaviate-server"
    report = subprocess.run(["go", "tool", "pprof", "-top", "-nodecount=25", str(binary),
                             str(pprof)], capture_output=True, text=True)  # fmt: skip
    lines = [line for line in report.stdout.splitlines() if line.strip()]
    tops["weaviate"] = lines[:12]
    for name, top in tops.items():
        (CACHE / f"profile-{name}.txt").write_text("\n".join(top) + "\n")
    return tops


def _folded_top(folded: Path, count: int = 10) -> list[str]:
    """Leaf frames by share of samples, from py-spy's raw (folded stacks) output."""
    own: dict[str, int] = {}
    total = 0
    for line in folded.read_text().splitlines() if folded.exists() else []:
        stack, _, samples = line.rpartition(" ")
        leaf = stack.rsplit(";", 1)[-1]
        own[leaf] = own.get(leaf, 0) + int(samples)
        total += int(samples)
    ranked = sorted(own.items(), key=lambda item: -item[1])[:count]
    return [f"{100 * n / total:5.1f}% {leaf}" for leaf, n in ranked] if total else []


def cpu_per_1000_pages(cpu: dict[str, float], pages: int) -> dict[str, Any]:
    """Each kind of process's CPU seconds per 1,000 pages, and the pipeline's own work (the
    apps: download, extract without its parser child, chunk, embed, index, tracker) against the
    parser's (pdfium in extract's child), the work any tool would do to read the pages."""
    from streams.pipeline import APPS

    def per(seconds: float) -> float:
        return round(seconds / pages * 1000, 3)

    own = sum(cpu.get(app, 0.0) for app in APPS)
    parser = sum(seconds for name, seconds in cpu.items() if name.endswith("-parser"))
    return {
        "per_process": {name: per(seconds) for name, seconds in cpu.items()},
        "pipeline_own": per(own),
        "parser": per(parser),
        "own_to_parser": round(own / parser, 2) if parser else None,
        "chunk_to_parser": round(cpu.get("chunk", 0.0) / parser, 2) if parser else None,
    }


def large_run(stack_settings: Settings, workdir: Path, path: Path, replicas: int,
              servers: dict[str, psutil.Process], profiling: bool) -> dict[str, Any]:  # fmt: skip
    from docstreams_dev.servers.openai_server import EmbeddingsApi, serving
    from docstreams_dev.stack.ports import free_port_block

    api = EmbeddingsApi(fast=True)
    with serving(api) as url:
        settings = stack_settings.model_copy(
            update={
                "topic_prefix": "large.",
                "weaviate_collection": "BenchLarge",
                "embedder": "openai",
                "openai_base_url": url,
                "openai_api_key": "sk-bench",
                "openai_dimensions": 384,
                "metrics_port": free_port_block(6 * replicas),
            }
        )
        with apps(settings, workdir / "large-apps.log", replicas) as supervisor:
            memory = Memory(supervisor, servers)
            indexed: list[tuple[float, int]] = []

            def on_update(progress: Any) -> None:
                windows = len(progress.indexed)
                if not indexed or indexed[-1][1] != windows:
                    indexed.append((time.monotonic() - memory.began, windows))

            profiled: dict[str, list[str]] = {}
            profiler = threading.Thread(
                target=lambda: profiled.update(profile(supervisor, settings, workdir, 60.0)),
                daemon=True,
            )
            with memory.sampling():
                memory.began = time.monotonic()
                if profiling:
                    profiler.start()
                seconds, progress = ingest(settings, path, "large", 3 * 3600, on_update)
                if profiling:
                    profiler.join()
            transactions = stage_transactions(settings)
            over_memory = counter_by_label(  # the first extract replica's
                settings, "extract", "docstreams_parser_over_memory", "then"
            )
    inputs = sum(len(r) for r in api.requests)
    return {"seconds": seconds, "progress": progress, "memory": memory, "indexed": indexed,
            "chunks": progress.completed.chunks, "embedding_inputs": inputs,
            "embedding_requests": len(api.requests), "profile": profiled,
            "transactions": transactions, "parser_over_memory": over_memory}  # fmt: skip


def local_runs(stack_settings: Settings, workdir: Path, servers: dict[str, psutil.Process],
               skip_small: bool) -> dict[str, Any]:  # fmt: skip
    settings = stack_settings.model_copy(
        update={"topic_prefix": "local.", "weaviate_collection": "BenchLocal", "embedder": "local"}
    )
    medium = page_slice(FULLREFMAN, 1001, 1300, "refman-1001-1300.pdf")
    smalls = [page_slice(FULLREFMAN, 10 * i + 1, 10 * i + 10, f"refman-small-{i}.pdf")
              for i in range(20)]  # fmt: skip
    result: dict[str, Any] = {}
    with apps(settings, workdir / "local-apps.log") as supervisor:
        memory = Memory(supervisor, servers)
        with memory.sampling():
            seconds, progress = ingest(settings, medium, "medium", 3600)
            chunks = progress.completed.chunks
            result["embed"] = {"pages": 300, "chunks": chunks, "seconds": round(seconds, 1),
                               "chunks_per_s": round(chunks / seconds, 1)}  # fmt: skip
            if not skip_small:
                latencies, submitted = [], {}
                for i, small in enumerate(smalls):
                    submitted[f"small-{i}"] = time.time()
                    seconds, _ = ingest(settings, small, f"small-{i}", 300)
                    latencies.append(seconds)
                result["small"] = {
                    "documents": len(latencies), "pages_each": 10,
                    "p50_s": round(statistics.median(latencies), 2),
                    "p95_s": round(statistics.quantiles(latencies, n=20)[-1], 2),
                    "max_s": round(max(latencies), 2),
                    "median_s_from_submit_to_event": stage_marks(settings, submitted),
                }  # fmt: skip
        result["peak_rss_mb"] = {k: round(v, 1) for k, v in sorted(memory.peaks.items())}
    return result


def stage_marks(settings: Settings, submitted: dict[str, float]) -> dict[str, float]:
    """For the small documents: median seconds from submit to each kind of event (one window
    each), by the events' broker timestamps: where the latency goes, stage by stage."""
    from streams.kafka_clients import read_all
    from streams.topics import topic_name

    marks: dict[str, list[float]] = {}
    for record in read_all(settings, topic_name(settings, "events")):
        event = orjson.loads(record.value() or b"{}")
        document = event.get("document_id")
        if document in submitted:
            at = record.timestamp()[1] / 1000 - submitted[document]
            marks.setdefault(str(event.get("type")), []).append(at)
    medians = {kind: round(statistics.median(times), 2) for kind, times in marks.items()}
    return dict(sorted(medians.items(), key=lambda item: item[1]))


# --- report ----------------------------------------------------------------------------------
def chart(large: dict[str, Any], target: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    memory: Memory = large["memory"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 8), sharex=True)
    colours = plt.get_cmap("tab20")  # 20 distinct colours (tab10 repeats after 10 lines)
    for i, (name, points) in enumerate(sorted(memory.series.items())):
        top.plot([t for t, _ in points], [mb for _, mb in points], label=name, linewidth=1,
                 color=colours(i % 20))  # fmt: skip
    top.axhline(150, color="grey", linestyle=":", linewidth=1)
    top.set_ylabel("RSS (MB)")
    top.legend(fontsize=7, ncol=4)
    top.set_title(title, fontsize=10)
    # Pages indexed per 5-second bin (windows of WINDOW_PAGES pages).
    indexed, step = large["indexed"], 5.0
    bins = [0.0] * (int(max((t for t, _ in indexed), default=0) // step) + 1)
    previous = 0
    for t, windows in indexed:
        bins[int(t // step)] += (windows - previous) * WINDOW_PAGES / step
        previous = windows
    smoothed = [(i * step + step / 2, rate) for i, rate in enumerate(bins)]
    bottom.plot([t for t, _ in smoothed], [r for _, r in smoothed], color="tab:green")
    bottom.set_ylabel("pages indexed / s (5 s bins)")
    bottom.set_xlabel("seconds since submit")
    fig.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=90)


def append_row(result: dict[str, Any], replicas: int, markdown: Path) -> None:
    large, small = result["large"], result.get("small", {})
    rss = large["peak_rss_mb"]
    row = (
        f"| {dt.date.today().isoformat()} | {replicas} | {large['pages']:,} / "
        f"{large['bytes'] / 2**30:.2f} GiB | {large['seconds']} | {large['pages_per_s']} | "
        f"{large['raw_pages_per_s']['pypdfium2']} / {large['raw_pages_per_s']['pypdf']} | "
        f"{large['ratio_to_raw']} | {large['chunks_per_s']} | "
        f"{large['embedding_inputs_per_s']} | "
        + " / ".join(f"{rss.get(n, '-')}" for n in SERIES)
        + f" | {large['parser_child_peak_rss_mb'].get('extract', '-')} | "
        f"{result.get('embed_chunks_per_s') or '-'} | "
        f"{small.get('p50_s', '-')} / {small.get('p95_s', '-')} |"
    )
    text = markdown.read_text()
    anchor = "<!-- bench/run.py rows -->"
    if anchor not in text:
        raise RuntimeError(f"{markdown} has no {anchor} line to append under")
    markdown.write_text(text.replace(anchor, f"{row}\n{anchor}", 1))


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--raw":
        backend, mode, file, seconds = sys.argv[2:6]
        print(orjson.dumps(_raw_child(backend, mode, Path(file), float(seconds))).decode())
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--extract-replicas", type=int, default=1)
    parser.add_argument("--pypdf-seconds", type=float, default=60.0)
    parser.add_argument(
        "--raw-windows", action="store_true", help="also raw pypdfium2 in 25-page windows"
    )
    parser.add_argument(
        "--skip-raw", action="store_true", help="reuse the last run's raw numbers of this file"
    )
    parser.add_argument(
        "--skip-large", action="store_true", help="only the local-embedder runs (not recorded)"
    )
    parser.add_argument("--skip-local", action="store_true", help="no local-embedder runs")
    parser.add_argument("--skip-small", action="store_true")
    parser.add_argument("--no-record", action="store_true", help="no docs row, no chart")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy and pprof 60 s into the large run, 30 s"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from docstreams_dev.stack import Stack
    from docstreams_dev.stack.ports import private_stack_settings

    ensure_packages()
    CACHE.mkdir(parents=True, exist_ok=True)
    path = large_pdf()
    total_pages = _page_count(path)
    raws: dict[str, Any] = {}
    saved = CACHE / "raw.json"  # the last raw numbers of this very file, for --skip-raw
    identity = [path.stat().st_size, path.stat().st_mtime_ns]
    if not args.skip_raw:
        raws["pypdfium2"] = raw("pypdfium2", "whole", path, 3600)
        if args.raw_windows:
            raws["pypdfium2_windows"] = raw("pypdfium2", "windows", path, 3600)
        raws["pypdf"] = raw("pypdf", "whole", path, args.pypdf_seconds)
        saved.write_bytes(orjson.dumps({"file": identity, "raw": raws}))
    elif saved.exists() and orjson.loads(saved.read_bytes())["file"] == identity:
        raws = {**orjson.loads(saved.read_bytes())["raw"], "reused": True}
    with tempfile.TemporaryDirectory(prefix="docstreams-bench-") as scratch:
        workdir = Path(scratch)
        stack_settings = private_stack_settings(
            workdir / "stack", blob_dir=workdir / "blobs", max_download_bytes=4 * 2**30,
            local_source_roots=[workdir, CACHE, *SOURCE_DIRS],
        )  # fmt: skip
        if args.profile:
            from docstreams_dev.stack.ports import free_port_block

            stack_settings = stack_settings.model_copy(
                update={"weaviate_pprof_port": free_port_block(1)}
            )
        stack = Stack(stack_settings)
        stack.up()
        try:
            servers = {name: proc for name, proc in
                       (("kafka", stack.kafka.process()), ("weaviate", stack.weaviate.process()))
                       if proc is not None}  # fmt: skip
            if args.skip_large:
                local = local_runs(stack_settings, workdir, servers, args.skip_small)
                print(orjson.dumps({"local": local}).decode())
                return 0
            large = large_run(
                stack_settings, workdir, path, args.extract_replicas, servers, args.profile
            )
            local = (
                {}
                if args.skip_local
                else local_runs(stack_settings, workdir, servers, args.skip_small)
            )
        finally:
            with contextlib.suppress(Exception):
                shutil.copy(workdir / "large-apps.log", CACHE / "large-apps.log")
            stack.down()
    memory: Memory = large["memory"]
    seconds = large["seconds"]
    raw_rate = {k: raws.get(k, {}).get("pages_per_s", 0.0) for k in ("pypdfium2", "pypdf")}
    default = Settings().pdf_backend
    pages_per_s = round(total_pages / seconds, 1)
    result: dict[str, Any] = {
        "large": {
            "pages": total_pages,
            "bytes": path.stat().st_size,
            "seconds": round(seconds, 1),
            "pages_per_s": pages_per_s,
            "raw_pages_per_s": raw_rate,
            "raw_windows_pages_per_s": raws.get("pypdfium2_windows", {}).get("pages_per_s"),
            "ratio_to_raw": round(pages_per_s / raw_rate[default], 2) if raws else None,
            "chunks": large["chunks"],
            "chunks_per_s": round(large["chunks"] / seconds, 1),
            "embedding_inputs_per_s": round(large["embedding_inputs"] / seconds, 1),
            "embedding_requests": large["embedding_requests"],
            "extract_replicas": args.extract_replicas,
            "peak_rss_mb": {n: round(memory.peaks[n], 1) for n in SERIES if n in memory.peaks},
            "cpu_seconds": memory.cpu_seconds(),
            "cpu_seconds_per_1000_pages": cpu_per_1000_pages(memory.cpu_seconds(), total_pages),
            "profile": large["profile"],
            "transactions": large["transactions"],
            "parser_over_memory": large["parser_over_memory"],
            "parser_child_peak_rss_mb": {
                n.removesuffix("-parser"): round(v, 1)
                for n, v in memory.peaks.items()
                if n.endswith("-parser")
            },
        },
        "raw": raws,
        "small": local.get("small", {}),
        "embed_chunks_per_s": local.get("embed", {}).get("chunks_per_s"),
        "local": local,
        "machine": f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB",
    }
    if not args.no_record:
        chart(large, ROOT / "docs" / "bench" / f"large-{args.extract_replicas}x.png",
              f"{total_pages:,} pages, {path.stat().st_size / 2**30:.2f} GiB, "
              f"{args.extract_replicas} extract process(es): {seconds:.0f} s")  # fmt: skip
        append_row(result, args.extract_replicas, ROOT / "docs" / "benchmarks.md")
    print(orjson.dumps(result).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
