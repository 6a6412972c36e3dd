"""The chaos run: proof that killing anything at any moment leaves the index exactly right.

On a private local stack (its own state dir and free ports), one document set is ingested twice:
a clean reference run, then a run in which stage processes are SIGKILLed at random moments and
restarted after a random delay, the Kafka broker is restarted and Weaviate is stopped for a
while. Then Weaviate's objects of both runs are compared: same ids, same texts, same page
ranges, same vectors (within a float tolerance). The summary is one JSON line.

What was redone is measured from Kafka itself: every record a runner batch produces carries the
batch's id in a header (``docstreams-batch``), so the batches whose records exist in the log
but not among the committed ones are the batches that were aborted or killed and done again.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from pypdf import PdfReader, PdfWriter

from streams.adapters.weaviate_store import ChunkIndex
from streams.kafka_clients import admin_client, read_all
from streams.messages import VectorBatch
from streams.pipeline import APPS  # every app can be killed: the five stages and the tracker
from streams.producer import submit
from streams.progress import DocumentProgress, follow_all
from streams.runner import BATCH_HEADER
from streams.settings import Settings, as_environment
from streams.stack import Stack
from streams.stack.ports import private_stack_settings
from streams.topics import create_topics, topic_name

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "harbour-handbook.pdf"
TENANT = "chaos"
VECTOR_TOLERANCE = 1e-3  # int8 ONNX: batch shapes differ between runs, results within ~1e-6


@dataclass(frozen=True)
class ChaosPlan:
    kills: int = 30
    broker_restarts: int = 1
    weaviate_outage_s: float = 20.0
    seed: int = 1
    pages: int = 2000
    timeout_s: float = 1800.0
    workdir: Path | None = None
    keep_stack: bool = False
    victims: tuple[str, ...] = tuple(APPS)  # the apps the kills choose from
    # Settings for both runs (e.g. another embedder), and for the chaos run only.
    settings: dict[str, Any] = field(default_factory=dict)
    chaos_settings: dict[str, Any] = field(default_factory=dict)
    # Called with the chaos run's settings before the stack stops; its result joins the summary.
    inspect: Callable[[Settings], dict[str, Any]] | None = None


# --- the document set -------------------------------------------------------------------------
def build_documents(folder: Path, pages: int) -> dict[str, Path]:
    """A PDF of ``pages`` pages assembled from the bundled sample's real pages, the sample itself,
    and a multi-window plain text file; built in the run, never committed."""
    folder.mkdir(parents=True, exist_ok=True)
    source = PdfReader(SAMPLE)
    writer = PdfWriter()
    while len(writer.pages) < pages:
        for page in source.pages:
            if len(writer.pages) < pages:
                writer.add_page(page)
    big = folder / f"assembled-{pages}.pdf"
    with big.open("wb") as out:
        writer.write(out)
    text = folder / "logbook.txt"
    with text.open("w") as out:
        for n in range(12_000):
            out.write(f"Logbook line {n}: the pilot boat left berth {n % 40} at tide {n % 7}.\n")
    return {"assembled": big, "handbook": SAMPLE, "logbook": text}


# --- the apps ---------------------------------------------------------------------------------
class Fleet:
    """Each app as its own process; one that dies on its own is restarted (as Kubernetes would)."""

    def __init__(self, settings: Settings, logs: Path) -> None:
        self.env = {**os.environ, **as_environment(settings)}
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.down: set[str] = set()  # killed on purpose, restarted by the chaos thread
        self.lock = threading.Lock()
        self.crashes: Counter[str] = Counter()
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        logs.mkdir(parents=True, exist_ok=True)

    def start(self, name: str) -> None:
        env = {**self.env, "DOCSTREAMS_INSTANCE_ID": f"chaos-{name}"}
        with (self.logs / f"{name}.log").open("ab") as out:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "streams", "run", name], env=env, cwd=ROOT,
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def __enter__(self) -> Fleet:
        for name in APPS:
            self.start(name)
        self._watcher.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._watcher.join(5)
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                proc.kill()

    def kill(self, name: str) -> None:
        with self.lock:
            self.down.add(name)
            self.procs[name].send_signal(signal.SIGKILL)
            self.procs[name].wait(30)

    def restart(self, name: str) -> None:
        with self.lock:
            self.start(name)
            self.down.discard(name)

    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            with self.lock:
                for name, proc in self.procs.items():
                    if name not in self.down and proc.poll() is not None:
                        self.crashes[name] += 1
                        log.warning("%s exited with %s; restarting", name, proc.returncode)
                        self.start(name)


# --- chaos ------------------------------------------------------------------------------------
@dataclass
class ChaosLog:
    kills: list[tuple[float, str]] = field(default_factory=list)
    broker_restarts: list[float] = field(default_factory=list)
    weaviate_outages: list[tuple[float, float]] = field(default_factory=list)


@contextmanager
def chaos(
    plan: ChaosPlan, fleet: Fleet, stack: Stack, rng: random.Random, finished: threading.Event
) -> Iterator[ChaosLog]:
    """Kills, a broker restart and a Weaviate outage, scheduled from the seed, in threads."""
    record = ChaosLog()
    began = time.monotonic()
    stop = threading.Event()
    kill_gaps = [rng.uniform(0.5, 4.0) for _ in range(plan.kills)]
    victims = [rng.choice(plan.victims) for _ in range(plan.kills)]
    downtimes = [rng.uniform(0.2, 3.0) for _ in range(plan.kills)]
    broker_at = sorted(rng.uniform(5.0, 40.0) for _ in range(plan.broker_restarts))
    weaviate_at = rng.uniform(5.0, 40.0)

    def killer() -> None:
        for gap, victim, downtime in zip(kill_gaps, victims, downtimes, strict=True):
            if stop.wait(gap) or finished.is_set():
                return
            fleet.kill(victim)
            record.kills.append((round(time.monotonic() - began, 1), victim))
            time.sleep(downtime)
            fleet.restart(victim)

    def broker() -> None:
        for at in broker_at:
            if stop.wait(max(0.0, at - (time.monotonic() - began))) or finished.is_set():
                return
            record.broker_restarts.append(round(time.monotonic() - began, 1))
            stack.kafka.stop()
            stack.kafka.start()
            stack.kafka.wait_healthy(180)

    def weaviate() -> None:
        if plan.weaviate_outage_s <= 0:
            return
        if stop.wait(weaviate_at) or finished.is_set():
            return
        began_outage = round(time.monotonic() - began, 1)
        stack.weaviate.stop()
        stop.wait(plan.weaviate_outage_s)
        stack.weaviate.start()
        stack.weaviate.wait_healthy(180)
        record.weaviate_outages.append((began_outage, round(time.monotonic() - began, 1)))

    threads = [threading.Thread(target=t, daemon=True) for t in (killer, broker, weaviate)]
    for thread in threads:
        thread.start()
    try:
        yield record
    finally:
        stop.set()
        for thread in threads:
            thread.join(240)


# --- one run ----------------------------------------------------------------------------------
def ingest(
    settings: Settings,
    documents: dict[str, Path],
    timeout_s: float,
    logs: Path,
    during: Callable[[Fleet, threading.Event], Any] | None = None,
) -> tuple[dict[str, DocumentProgress], Fleet]:
    create_topics(admin_client(settings), settings)
    finished = threading.Event()
    with Fleet(settings, logs) as fleet:
        submitted: dict[str, datetime] = {}
        for document_id, path in documents.items():
            submitted[document_id] = submit(settings, str(path), TENANT, document_id).submitted_at
        if during is None:
            progress = follow_all(settings, TENANT, submitted, timeout_s)
        else:
            with during(fleet, finished):
                progress = follow_all(settings, TENANT, submitted, timeout_s)
                finished.set()
    return progress, fleet


def snapshot(settings: Settings) -> dict[str, dict[str, Any]]:
    """Every object of the tenant: id -> properties and vector."""
    index = ChunkIndex(settings)
    try:
        collection = index.client.collections.use(index.name).with_tenant(TENANT)
        return {
            str(o.uuid): {**o.properties, "vector": np.asarray(o.vector["default"], dtype="f4")}
            for o in collection.iterator(include_vector=True)
        }
    finally:
        index.close()


def compare(
    reference: dict[str, dict[str, Any]], found: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    places = Counter(
        (o["document_id"], o["version"], o["window"], o["chunk_index"]) for o in found.values()
    )
    repeated = sum(n - 1 for n in places.values())
    extra = len(found.keys() - reference.keys())
    missing = len(reference.keys() - found.keys())
    mismatched, worst = 0, 0.0
    for object_id in reference.keys() & found.keys():
        a, b = reference[object_id], found[object_id]
        diff = (
            float(np.max(np.abs(a["vector"] - b["vector"])))
            if a["vector"].shape == b["vector"].shape
            else 1.0
        )
        worst = max(worst, diff)
        same = all(a.get(k) == b.get(k) for k in ("text", "page_start", "page_end", "version"))
        mismatched += not same or diff > VECTOR_TOLERANCE
    return {
        "expected_chunks": len(reference),
        "found_chunks": len(found),
        "duplicates": repeated + extra,
        "missing": missing,
        "mismatched": mismatched,
        "max_vector_difference": worst,
    }


def redone_work(settings: Settings) -> dict[str, Any]:
    """Batches (and embedding inputs) whose outputs are in the log but were never committed."""
    committed = _batches(settings, "read_committed")
    written = _batches(settings, "read_uncommitted")
    redone: dict[str, int] = {}
    repeated_inputs = 0
    for stage, batches in written.items():
        lost = batches.keys() - committed.get(stage, {}).keys()
        redone[stage] = len(lost)
        if stage == "embed":
            repeated_inputs += sum(batches[b] for b in lost)
    return {"redone_batches_per_stage": redone, "embedding_inputs_repeated": repeated_inputs}


def _batches(settings: Settings, isolation: str) -> dict[str, dict[str, int]]:
    """stage -> batch id -> embedding inputs in it (vectors) or records (elsewhere)."""
    found: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    stage_of_topic = {
        "extract-tasks": "download", "pages": "extract", "chunks": "chunk", "vectors": "embed",
    }  # fmt: skip
    for key in ("extract-tasks", "pages", "chunks", "vectors", "events"):
        for record in read_all(settings, topic_name(settings, key), isolation):
            value = record.value() or b""
            batch = dict(record.headers() or []).get(BATCH_HEADER)
            if not isinstance(batch, bytes):
                continue  # not written by a runner (the tracker's own events)
            batch_id = batch.decode()
            if key == "events":
                stage = str(orjson.loads(value).get("stage"))
                if stage != "index":
                    continue  # the other stages are counted by their work topic
            else:
                stage = stage_of_topic[key]
            weight = len(VectorBatch.from_wire(value).chunks) if key == "vectors" else 1
            found[stage][batch_id] += weight
    return found


# --- the whole run ----------------------------------------------------------------------------
def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so a `kill` still stops the private stack and the apps


def run(plan: ChaosPlan) -> dict[str, Any]:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    began = time.monotonic()
    workdir = plan.workdir or Path(tempfile.mkdtemp(prefix="docstreams-chaos-"))
    rng = random.Random(plan.seed)  # noqa: S311 - a replayable schedule, not a secret
    base = private_stack_settings(
        workdir / "stack",
        blob_dir=workdir / "blobs",
        allow_local_sources=True,
        batch_max_wait_s=0.2,
        transaction_timeout_s=60.0,  # short: a killed batch's transaction is rolled back soon
        **plan.settings,
    )
    stack = Stack(base)
    stack.up()
    try:
        documents = build_documents(workdir / "documents", plan.pages)
        reference_settings = base.model_copy(
            update={"topic_prefix": "reference.", "weaviate_collection": "ReferenceChunk"}
        )
        reference, _ = ingest(reference_settings, documents, plan.timeout_s, workdir / "logs-ref")
        _require_completed(reference, "reference run")
        chaos_settings = base.model_copy(
            update={
                "topic_prefix": "chaos.",
                "weaviate_collection": "ChaosChunk",
                **plan.chaos_settings,
            }
        )
        schedule: dict[str, ChaosLog] = {}

        @contextmanager
        def during(fleet: Fleet, finished: threading.Event) -> Iterator[None]:
            with chaos(plan, fleet, stack, rng, finished) as record:
                schedule["log"] = record
                yield

        progress, fleet = ingest(
            chaos_settings, documents, plan.timeout_s, workdir / "logs-chaos", during
        )
        incomplete = sorted(d for d, p in progress.items() if p.completed is None)
        summary: dict[str, Any] = {
            "documents": len(documents),
            "pages": plan.pages,
            **compare(snapshot(reference_settings), snapshot(chaos_settings)),
            "incomplete": incomplete,
            "kills": len(schedule["log"].kills),
            "killed": dict(Counter(v for _, v in schedule["log"].kills)),
            "crash_restarts": dict(fleet.crashes),
            "broker_restarts": len(schedule["log"].broker_restarts),
            "weaviate_outages_s": [round(b - a, 1) for a, b in schedule["log"].weaviate_outages],
            **redone_work(chaos_settings),
            **(plan.inspect(chaos_settings) if plan.inspect else {}),
            "seed": plan.seed,
            "seconds": round(time.monotonic() - began, 1),
            "workdir": str(workdir),
        }
    finally:
        if not plan.keep_stack:
            stack.down()
    return summary


def passed(summary: dict[str, Any]) -> bool:
    return (
        summary["duplicates"] == summary["missing"] == summary["mismatched"] == 0
        and not summary["incomplete"]
        and summary["found_chunks"] == summary["expected_chunks"] > 0
    )


def _require_completed(progress: dict[str, DocumentProgress], what: str) -> None:
    missing = {d: (p.failure.reason if p.failure else "timed out") for d, p in progress.items()
               if p.completed is None}  # fmt: skip
    if missing:
        raise RuntimeError(f"{what}: documents did not complete: {missing}")


__all__ = ["ChaosPlan", "passed", "run"]
