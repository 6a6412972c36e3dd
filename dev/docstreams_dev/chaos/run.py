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

import dataclasses
import os
import random
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from docstreams_dev import CHECKOUT
from docstreams_dev.chaos.compare import compare, redone_work, snapshot
from docstreams_dev.chaos.faults import ChaosLog, chaos
from docstreams_dev.chaos.plan import TENANT, ChaosPlan, build_documents, build_edits
from docstreams_dev.stack import Stack
from docstreams_dev.stack.ports import private_stack_settings
from streams.apps import StageProcesses, app_processes
from streams.kafka_clients import admin_client
from streams.pipeline import APPS, TRACKER_APP
from streams.producer import submit
from streams.progress import DocumentProgress, follow_all
from streams.settings import Settings, as_environment
from streams.supervisor import ChildSpec, RestartPolicy, Supervisor
from streams.topics import create_topics

# An app that dies on its own is restarted at once, however often (as Kubernetes would): the
# chaos run makes Kafka and Weaviate vanish on purpose, so quick exits are expected.
_RESTART_ALWAYS = RestartPolicy(delay_s=0.0, max_quick_exits=None)
_STOP_TIMEOUT_S = 90.0

During = Callable[[StageProcesses, threading.Event], AbstractContextManager[Any]]


@contextmanager
def supervised_apps(
    settings: Settings, logs: Path, replicas: int = 1, tracker_replicas: int = 1
) -> Iterator[StageProcesses]:
    """Every stage as ``replicas`` processes and the tracker as ``tracker_replicas`` under the one
    supervisor, each logging to ``logs``; yields the supervisor's processes by stage (the scale
    events add and retire replicas)."""
    settings = settings.model_copy(update={"instance_id": "chaos"})
    environment = {**os.environ, **as_environment(settings)}

    def in_checkout(spec: ChildSpec) -> ChildSpec:
        return dataclasses.replace(spec, cwd=CHECKOUT, log_path=logs / f"{spec.name}.log")

    counts = dict.fromkeys(APPS, replicas) | {TRACKER_APP: tracker_replicas}
    specs = [in_checkout(s) for s in app_processes(settings, list(APPS), counts, environment)]
    supervisor = Supervisor(specs, _RESTART_ALWAYS)
    stop = threading.Event()
    watcher = threading.Thread(target=supervisor.supervise, args=(stop, 1.0), daemon=True)
    supervisor.start_all()
    watcher.start()
    try:
        yield StageProcesses(supervisor, settings, environment, in_checkout)
    finally:
        stop.set()
        watcher.join(5)
        supervisor.stop_all(_STOP_TIMEOUT_S)


def ingest(
    settings: Settings,
    documents: dict[str, Path],
    timeout_s: float,
    logs: Path,
    during: During | None = None,
    edits: dict[str, Path] | None = None,
    during_edits: During | None = None,
    replicas: int = 1,
    tracker_replicas: int = 1,
) -> tuple[dict[str, DocumentProgress], Supervisor]:
    """Submit ``documents`` and follow them to the end, ``during`` (faults) running meanwhile;
    then, with ``edits``, submit those (new versions, same document ids) the same way. The
    progress is each document's last request's."""
    create_topics(admin_client(settings), settings)
    with supervised_apps(settings, logs, replicas, tracker_replicas) as apps:
        progress: dict[str, DocumentProgress] = {}
        for batch, faults in ((documents, during), (edits or {}, during_edits)):
            if batch:
                progress |= _submit_and_follow(settings, apps, batch, timeout_s, faults)
    return progress, apps.supervisor


def _submit_and_follow(
    settings: Settings,
    apps: StageProcesses,
    documents: dict[str, Path],
    timeout_s: float,
    during: During | None,
) -> dict[str, DocumentProgress]:
    finished = threading.Event()
    submitted: dict[str, datetime] = {}
    for document_id, path in documents.items():
        submitted[document_id] = submit(settings, str(path), TENANT, document_id).submitted_at
    if during is None:
        return follow_all(settings, TENANT, submitted, timeout_s)
    with during(apps, finished):
        progress = follow_all(settings, TENANT, submitted, timeout_s)
        finished.set()
    return progress


# --- the whole run ----------------------------------------------------------------------------
def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so a `kill` still stops the private stack and the apps


def run(plan: ChaosPlan) -> dict[str, Any]:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    began = time.monotonic()
    workdir = plan.workdir or Path(tempfile.mkdtemp(prefix="docstreams-chaos-"))
    base = private_stack_settings(
        workdir / "stack",
        blob_dir=workdir / "blobs",
        local_source_roots=[workdir, CHECKOUT / "samples"],
        batch_max_wait_s=0.2,
        transaction_timeout_s=60.0,  # short: a killed batch's transaction is rolled back soon
        **plan.settings,
    )
    stack = Stack(base)
    stack.up()
    try:
        summary = _both_runs(plan, base, stack, workdir)
    finally:
        if not plan.keep_stack:
            stack.down()
    return {**summary, "seconds": round(time.monotonic() - began, 1), "workdir": str(workdir)}


def _both_runs(plan: ChaosPlan, base: Settings, stack: Stack, workdir: Path) -> dict[str, Any]:
    """The reference run, then the chaos run; the summary of their comparison."""
    rng = random.Random(plan.seed)  # noqa: S311 - a replayable schedule, not a secret
    documents = build_documents(
        workdir / "documents", plan.pages, plan.small_documents, plan.recording_s
    )
    edits = build_edits(workdir / "edited", documents) if plan.edit_round else None
    reference_settings = base.model_copy(
        update={"topic_prefix": "reference.", "weaviate_collection": "ReferenceChunk"}
    )
    reference, _ = ingest(reference_settings, documents, plan.timeout_s, workdir / "logs-ref",
                          edits=edits, replicas=plan.replicas,
                          tracker_replicas=plan.tracker_replicas)  # fmt: skip
    _require_completed(reference, "reference run")
    chaos_settings = base.model_copy(
        update={"topic_prefix": "chaos.", "weaviate_collection": "ChaosChunk",
                **plan.chaos_settings}
    )  # fmt: skip
    schedules = [ChaosLog(), ChaosLog()]

    def faults(round_plan: ChaosPlan, log: int) -> During:
        @contextmanager
        def during(apps: StageProcesses, finished: threading.Event) -> Iterator[None]:
            with chaos(round_plan, apps.supervisor, stack, rng, finished, apps) as schedules[log]:
                yield

        return during

    # The edit round: kills only (the broker and Weaviate faults are the first round's).
    edit_plan = dataclasses.replace(plan, kills=plan.edit_kills, broker_restarts=0,
                                    weaviate_outage_s=0.0)  # fmt: skip
    progress, apps = ingest(
        chaos_settings, documents, plan.timeout_s, workdir / "logs-chaos", faults(plan, 0),
        edits, faults(edit_plan, 1), plan.replicas, plan.tracker_replicas,
    )  # fmt: skip
    schedule, edit_schedule = schedules
    return {
        "documents": len(documents),
        "pages": plan.pages,
        "replicas": plan.replicas,
        "tracker_replicas": plan.tracker_replicas,
        **compare(snapshot(reference_settings), snapshot(chaos_settings)),
        "incomplete": sorted(d for d, p in progress.items() if p.completed is None),
        "where_incomplete_stopped": {
            d: _where_stopped(p) for d, p in progress.items() if p.completed is None
        },
        "edited": sorted(edits or {}),
        "kills": len(schedule.kills) + len(edit_schedule.kills),
        "kills_in_edit_round": len(edit_schedule.kills),
        "killed": dict(Counter(v for _, v in schedule.kills + edit_schedule.kills)),
        "crash_restarts": dict(apps.crashes),
        "broker_restarts": len(schedule.broker_restarts),
        "weaviate_outages_s": [round(b - a, 1) for a, b in schedule.weaviate_outages],
        "scale_events": [list(e) for e in schedule.scales + edit_schedule.scales],
        **redone_work(chaos_settings),
        **(plan.inspect(chaos_settings) if plan.inspect else {}),
        "seed": plan.seed,
    }


def _where_stopped(progress: DocumentProgress) -> dict[str, Any]:
    """How far an incomplete document got, as its events told the follower: which windows
    each stage finished, of how many, and any failure."""
    state = progress.state
    return {
        "phase": state.phase.value,
        "version": (state.version or "")[:12],
        "window_count": state.window_count,
        "unchanged_windows": state.unchanged_windows,
        "windows_done": state.windows_done,
        "failure": progress.failure.reason if progress.failure else None,
    }


def _require_completed(progress: dict[str, DocumentProgress], what: str) -> None:
    missing = {d: (p.failure.reason if p.failure else "timed out") for d, p in progress.items()
               if p.completed is None}  # fmt: skip
    if missing:
        raise RuntimeError(f"{what}: documents did not complete: {missing}")
