"""docstreams next to the pipelines a user would otherwise run, on the same inputs in one run:
LlamaIndex's IngestionPipeline and Haystack's indexing pipeline (bench/peer_pipelines.py, in a
virtual environment of their own with the versions in PEER_PINS).

Every system writes to the same private Weaviate and pays the same local OpenAI-compatible
server (fast mode: hash vectors, so no one waits on a model; each system its own server, so its
tokens are its own). Workloads:

- ``a``: the 1 GB / 26,646-page PDF of bench/run.py (``--workloads a,...``; long).
- ``b``: 200 small real documents submitted at once: 70 ten-page PDFs cut from R's reference
  manual, 65 HTML pages and 65 Markdown files from /usr/share/doc (sorted, the first that are
  large enough).
- ``c``: the same 200 again, unchanged.
- ``d``: one paragraph edited in ten of the Markdown files, then all 200 again.

Columns per system and workload: wall seconds of the work, from a ready system (docstreams: every
app's /readyz answered, as a deployed service is; a peer: from the moment its process has
imported its libraries and connected, ``ready_at`` of bench/peer_pipelines.py, to its end), and
with the start (docstreams: its apps' start before b, the first workload; a peer: its whole
process, every run); pages/s (a: pages; b-d: documents/s, of the work), peak RSS of
the process tree in MB (docstreams: the largest app tree, stage + parser child, and the sum of
all its processes; a peer: its process and its workers), CPU seconds (docstreams: all its
processes; a peer: its process tree), tokens paid (counted by the embedding server), objects in
the system's collection afterwards, and completeness: of 3 six-word phrases (within 60
characters) drawn from each document's text (pypdfium2 / docstreams' HTML and Markdown text),
how many some object holds (words compared in lower case, punctuation dropped). A peer over
``--peer-memory-mb`` (16 GB: LlamaIndex needs ~10 on a) or ``--peer-timeout-s`` (30 min) is
stopped: that is its result. What the figures
leave out: Kafka and Weaviate (shared by all, not counted for anyone), the embedding server.

    .venv/bin/python bench/peers.py [--workloads b,c,d] [--systems docstreams,llamaindex,haystack]

Prints one JSON line per system and workload, then one with all of them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson
import psutil

from bench.processes import (
    app_name,
    app_url,
    ready,
    sampling_every,
    stage_transactions,
    wait_until,
)
from bench.run import CACHE, FULLREFMAN, ensure_packages, large_pdf, page_slice
from docstreams_dev.servers.openai_server import EmbeddingsApi, serving
from docstreams_dev.stack import Stack
from docstreams_dev.stack.ports import free_port_block, private_stack_settings
from streams.adapters import extractors
from streams.apps import app_processes
from streams.kafka_clients import admin_client
from streams.pipeline import APPS
from streams.producer import submit
from streams.progress import follow_all
from streams.settings import Settings, as_environment
from streams.supervisor import RestartPolicy, Supervisor
from streams.topics import create_topics
from streams.weaviate_clients import connect_weaviate

PEER_PINS = (
    "llama-index-core==0.14.25",
    "llama-index-readers-file==0.7.0",
    "llama-index-embeddings-openai==0.7.0",
    "llama-index-vector-stores-weaviate==1.7.1",
    "pymupdf==2.0",
    "beautifulsoup4==4.15.0",
    "haystack-ai==3.4.1",
    "weaviate-haystack==8.0.0",
    "pypdf==6.21.4",
    "trafilatura==2.3.1",
    "lxml_html_clean==0.4.7",  # trafilatura's HTML cleaner, split out of lxml
    "markdown-it-py==4.3.0",
    "mdit-plain==1.0.1",
)
PEERS_VENV = CACHE / "peers-venv"
SYSTEMS = ("docstreams", "llamaindex", "haystack")
TENANT = "peers"
PROBES_PER_DOCUMENT, PROBE_WORDS = 3, 6
EDIT = "This paragraph was edited for the benchmark, and only this paragraph."


# --- inputs -----------------------------------------------------------------------------------
def peers_python() -> Path:
    """The peers' interpreter, their environment made (or remade) from PEER_PINS."""
    python, stamp = PEERS_VENV / "bin" / "python", PEERS_VENV / "pins.txt"
    if not stamp.exists() or stamp.read_text() != "\n".join(PEER_PINS):
        shutil.rmtree(PEERS_VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_PINS], check=True)
        stamp.write_text("\n".join(PEER_PINS))
    return python


def small_corpus(folder: Path, documents: int = 200) -> list[Path]:
    """200 documents: 70 ten-page PDFs, 65 HTML pages, 65 Markdown files (copied: edits stay
    in the bench's folder); fewer in the same proportions for a trial."""
    ensure_packages()
    folder.mkdir(parents=True, exist_ok=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    pdfs = round(documents * 0.35)
    files = [page_slice(FULLREFMAN, 10 * i + 1, 10 * i + 10, f"refman-small-{i}.pdf")
             for i in range(pdfs)]  # fmt: skip
    html = (documents - pdfs) // 2
    for suffix, least, count in ((".html", 4096, html), (".md", 3072, documents - pdfs - html)):
        found = sorted(p for p in Path("/usr/share/doc").rglob(f"*{suffix}")
                       if p.is_file() and p.stat().st_size >= least)  # fmt: skip
        if len(found) < count:
            raise RuntimeError(f"only {len(found)} {suffix} files of >= {least} bytes here")
        files += found[:count]
    copies = []
    for n, path in enumerate(files):
        target = folder / f"doc-{n:03d}{path.suffix}"
        shutil.copyfile(path, target)
        copies.append(target)
    return copies


def edit_ten(files: list[Path]) -> list[Path]:
    """One paragraph of each of the first ten Markdown files gets a sentence."""
    edited = []
    for path in [p for p in files if p.suffix == ".md"][:10]:
        paragraphs = path.read_text(errors="replace").split("\n\n")
        middle = len(paragraphs) // 2
        paragraphs[middle] = f"{paragraphs[middle]} {EDIT}"
        path.write_text("\n\n".join(paragraphs))
        edited.append(path)
    return edited


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def probes(files: list[Path], seed: int = 7) -> list[str]:
    """Six-word phrases from each document's text, as docstreams' extractors read it."""
    rng, out = random.Random(seed), []  # noqa: S311 (a sample, not a secret)
    for path in files:
        if path.suffix == ".pdf":
            text = " ".join(p.text for p in extractors.pdf_window("pypdfium2", path, 1, 10_000))
        elif path.suffix == ".html":
            text = extractors.html_text(path)
        else:
            text = path.read_text(errors="replace")
        found = list(re.finditer(r"[a-z0-9]+", text.lower()))
        # Phrases of prose: six words within 60 characters (a table of contents' dot leaders
        # put more tokens between two words than any chunk overlap holds).
        starts = [i for i in range(len(found) - PROBE_WORDS)
                  if found[i + PROBE_WORDS - 1].end() - found[i].start() <= 60]  # fmt: skip
        for start in rng.sample(starts, min(PROBES_PER_DOCUMENT, len(starts))):
            out.append(" ".join(m.group() for m in found[start : start + PROBE_WORDS]))
    return out


# --- measuring ----------------------------------------------------------------------------------
@dataclasses.dataclass
class TreeSampler:
    """RSS and CPU of processes, sampled every 0.2 s: the peak of the sum per group and the
    last CPU seconds seen of each process."""

    groups: dict[str, list[psutil.Process]]  # group -> its roots (their children join it)
    peak_mb: dict[str, float] = dataclasses.field(default_factory=dict)
    cpu: dict[int, float] = dataclasses.field(default_factory=dict)

    def sample(self) -> None:
        # One scan of the process table per sample (Process.children scans it once per root:
        # with docstreams' nine roots that was most of this process's CPU, taken from the
        # cores the systems share).
        children: dict[int, list[psutil.Process]] = {}
        for proc in psutil.process_iter(["ppid"]):
            children.setdefault(proc.info["ppid"], []).append(proc)
        for group, roots in self.groups.items():
            total = 0.0
            tree = list(roots)
            for proc in tree:  # grows as it goes: each process's children join
                tree += children.get(proc.pid, [])
                with contextlib.suppress(psutil.Error):
                    total += proc.memory_info().rss / 2**20
                    times = proc.cpu_times()
                    self.cpu[proc.pid] = times.user + times.system
            self.peak_mb[group] = max(self.peak_mb.get(group, 0.0), total)

    @contextlib.contextmanager
    def running(self) -> Iterator[TreeSampler]:
        with sampling_every(0.2, self.sample):
            yield self


def collection_texts(settings: Settings, collection: str, prop: str, tenant: str | None
                     ) -> list[str]:  # fmt: skip
    client = connect_weaviate(settings)
    try:
        handle = client.collections.use(collection)
        if tenant is not None:
            handle = handle.with_tenant(tenant)
        return [
            str(o.properties.get(prop) or "") for o in handle.iterator(return_properties=[prop])
        ]
    finally:
        client.close()


def completeness(texts: list[str], wanted: list[str]) -> tuple[str, list[str]]:
    """How many of the phrases some object holds, and the first few it does not."""
    held = "\n".join(" ".join(words(t)) for t in texts)
    missing = [p for p in wanted if p not in held]
    return f"{len(wanted) - len(missing)}/{len(wanted)}", missing[:5]


# --- the systems --------------------------------------------------------------------------------
@contextlib.contextmanager
def docstreams_running(settings: Settings, log: Path) -> Iterator[float]:
    """The apps, started and ready (each /readyz: producer up, partitions assigned); yields the
    seconds that took."""
    environment = {**os.environ, **as_environment(settings)}
    specs = [dataclasses.replace(s, log_path=log.with_name(f"{s.name}.log"))
             for s in app_processes(settings, list(APPS), {}, environment)]  # fmt: skip
    supervisor = Supervisor(specs, RestartPolicy(delay_s=0.5, max_quick_exits=None))
    began = time.monotonic()
    supervisor.start_all()
    try:
        urls = [app_url(settings, name) for name in APPS]  # METRICS_PORT is set in main()
        wait_until("the apps ready", lambda: all(ready(u) for u in urls), 300, 0.2)
        yield time.monotonic() - began
    finally:
        supervisor.stop_all(60)


def run_docstreams(settings: Settings, files: list[Path], timeout_s: float, start_s: float
                   ) -> dict[str, Any]:  # fmt: skip
    """``start_s``: the apps' start, when this is the first workload after it (else 0)."""
    me = psutil.Process()
    apps = [p for p in me.children() if app_name(p) in APPS]
    sampler = TreeSampler({app_name(p): [p] for p in apps} | {"all": apps})
    sampler.sample()
    cpu_before = dict(sampler.cpu)
    transactions_before = stage_transactions(settings)
    began = time.monotonic()
    with sampler.running():
        submitted = {f.stem: submit(settings, str(f), TENANT, f.stem).submitted_at for f in files}
        ended = follow_all(settings, TENANT, submitted, timeout_s)
    seconds = time.monotonic() - began
    transactions = {stage: int(counts["transactions"] - transactions_before[stage]["transactions"])
                    for stage, counts in stage_transactions(settings).items()}  # fmt: skip
    failed = {d: str(p.failure) for d, p in ended.items() if p.completed is None}
    cpu = sum(v - cpu_before.get(pid, 0.0) for pid, v in sampler.cpu.items())
    trees = {k: round(v, 1) for k, v in sampler.peak_mb.items() if k != "all"}
    return {"seconds": round(seconds, 1), "seconds_with_start": round(seconds + start_s, 1),
            "cpu_s": round(cpu, 1), "peak_tree_mb": max(trees.values()), "peak_trees_mb": trees,
            "peak_all_mb": round(sampler.peak_mb["all"], 1), "failed": failed,
            "transactions": transactions}  # fmt: skip


def run_peer(system: str, settings: Settings, url: str, files: list[Path], state: Path,
             memory_mb: float, timeout_s: float) -> dict[str, Any]:  # fmt: skip
    listing = state / "files.txt"
    listing.write_text("\n".join(str(f) for f in files))
    command = [str(peers_python()), str(Path(__file__).with_name("peer_pipelines.py")), system,
               "--files", str(listing), "--state", str(state),
               "--weaviate-port", str(settings.weaviate_http_port),
               "--weaviate-grpc-port", str(settings.weaviate_grpc_port),
               "--openai-url", url, "--collection", collection_of(system)]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.monotonic()
    errors = (state / "stderr.log").open("ab")
    proc = psutil.Popen(command, stdout=subprocess.PIPE, stderr=errors)
    sampler = TreeSampler({"tree": [proc]})
    stopped = None
    with sampler.running():
        while proc.poll() is None:
            if sampler.peak_mb.get("tree", 0.0) > memory_mb:
                stopped = f"over {memory_mb:.0f} MB"
            elif time.monotonic() - began > timeout_s:
                stopped = f"over {timeout_s:.0f} s"
            if stopped:
                for child in proc.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        child.kill()
                proc.kill()
                break
            time.sleep(0.2)
    output = (proc.communicate()[0] or b"").decode().strip().splitlines()
    errors.close()
    ended = time.monotonic()
    seconds = ended - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result: dict[str, Any] = {"seconds": round(seconds, 1), "seconds_with_start": round(seconds, 1),
                              "cpu_s": round(cpu, 1),
                              "peak_tree_mb": round(sampler.peak_mb.get("tree", 0.0), 1),
                              "stopped": stopped, "exit": proc.returncode}  # fmt: skip
    if proc.returncode == 0 and output:
        reported = orjson.loads(output[-1])
        ready_at = reported.pop("ready_at", began)
        result |= reported | {"seconds": round(ended - ready_at, 1)}  # the work alone
    return result


def collection_of(system: str) -> str:
    return {"llamaindex": "PeerLlamaIndex", "haystack": "PeerHaystack"}[system]


def objects_and_texts(system: str, settings: Settings) -> list[str]:
    if system == "docstreams":
        return collection_texts(settings, settings.weaviate_collection, "text", TENANT)
    prop = "text" if system == "llamaindex" else "content"
    return collection_texts(settings, collection_of(system), prop, None)


# --- the run ------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", default="b,c,d")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--peer-memory-mb", type=float, default=16384)  # LlamaIndex: 9.8 GB on a
    parser.add_argument("--peer-timeout-s", type=float, default=1800)
    parser.add_argument("--documents", type=int, default=200, help="fewer for a trial")
    args = parser.parse_args()
    workloads, systems = args.workloads.split(","), args.systems.split(",")
    workdir = Path(tempfile.mkdtemp(prefix="docstreams-peers-"))
    base = private_stack_settings(workdir / "stack", blob_dir=workdir / "blobs",
                                  local_source_roots=[workdir, CACHE],
                                  batch_max_wait_s=0.2,
                                  metrics_port=free_port_block(len(APPS)))  # fmt: skip
    corpus = small_corpus(workdir / "corpus", args.documents) if set(workloads) - {"a"} else []
    large = large_pdf() if "a" in workloads else None
    wanted = {"b": probes(corpus)} if corpus else {}  # phrases of the unedited documents
    stack = Stack(base)
    stack.up()
    results: dict[str, dict[str, Any]] = {}
    try:
        for system in systems:
            api = EmbeddingsApi(fast=True)
            state = workdir / system
            state.mkdir()
            with serving(api) as url:
                settings = base.model_copy(update={
                    "topic_prefix": "peers.", "embedder": "openai", "openai_base_url": url,
                    "openai_api_key": "sk-bench", "openai_dimensions": 384,
                    "weaviate_collection": "PeerDocstreams"})  # fmt: skip
                context: contextlib.AbstractContextManager[float] = contextlib.nullcontext(0.0)
                if system == "docstreams":
                    create_topics(admin_client(settings), settings)
                    context = docstreams_running(settings, state / "apps.log")
                with context as start_s:
                    for workload in ["a", "b", "c", "d"]:
                        if workload not in workloads:
                            continue
                        if workload == "d":
                            edit_ten(corpus)
                        files = [large] if workload == "a" and large else corpus
                        tokens_before = sum(e.tokens for e in api.answered(200))
                        if system == "docstreams":
                            row = run_docstreams(settings, files, args.peer_timeout_s, start_s)
                            start_s = 0.0  # started once: later workloads find it running
                        else:
                            row = run_peer(system, settings, url, files, state,
                                           args.peer_memory_mb, args.peer_timeout_s)  # fmt: skip
                        row["tokens"] = sum(e.tokens for e in api.answered(200)) - tokens_before
                        texts = objects_and_texts(system, settings)
                        row["objects"] = len(texts)
                        if workload != "a" and "b" in wanted:
                            row["complete"], row["missing"] = completeness(texts, wanted["b"])
                        items = extractors.pdf_page_count(large) if workload == "a" and large \
                            else len(files)  # fmt: skip
                        row["items_per_s"] = round(items / row["seconds"], 2)
                        row["items_per_s_with_start"] = round(items / row["seconds_with_start"], 2)
                        results.setdefault(workload, {})[system] = row
                        print(f"{workload} {system}: {orjson.dumps(row).decode()}", flush=True)
                if corpus:  # (d) edited the files: the next system starts from the originals
                    shutil.rmtree(workdir / "corpus")
                    corpus = small_corpus(workdir / "corpus", args.documents)
    finally:
        stack.down()
    print(orjson.dumps({"workloads": results, "peer_pins": PEER_PINS,
                        "machine": f"{os.cpu_count()} cores"}).decode())  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
