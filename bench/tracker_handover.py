"""Two trackers, the second joining while documents flow: does the owner of every document know
it afterwards? (issue 21, item 3: a startup rebalance lost 4 of 26 documents in a chaos run.)

On a private stack: the five stages and one tracker start; ``--documents`` small Markdown files
are submitted; ``--join-after-s`` later a second tracker starts, and the group rebalances.
When every document's windows are indexed (``docs.events``), each document's status is asked
of its owner (through either replica: requests are forwarded). Prints one JSON line: the
documents the owner does not know, or that did not complete.

    .venv/bin/python bench/tracker_handover.py [--documents 26] [--join-after-s 2] [--rounds 1]

Exits 1 if any document was unknown or incomplete.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import orjson

from bench.processes import ready, wait_until
from docstreams_dev.chaos.plan import small_document
from docstreams_dev.stack import Stack
from docstreams_dev.stack.ports import free_port_block, private_stack_settings
from streams.apps import app_processes, replica_spec
from streams.kafka_clients import admin_client, read_all
from streams.pipeline import APPS, TRACKER_APP
from streams.producer import submit
from streams.settings import Settings, as_environment
from streams.supervisor import RestartPolicy, Supervisor
from streams.topics import create_topics, topic_name


def _status(url: str, tenant: str, document: str) -> dict[str, Any] | None:
    try:
        answer = httpx.get(f"{url}/documents/{tenant}/{document}", timeout=5)
    except httpx.TransportError:
        return None
    state: dict[str, Any] | None = answer.json() if answer.status_code == 200 else None
    return state


def one_round(base: Settings, workdir: Path, n: int, documents: int, join_after_s: float
              ) -> dict[str, Any]:  # fmt: skip
    settings = base.model_copy(update={"topic_prefix": f"handover{n}.",
                                       "tracker_port": free_port_block(2)})  # fmt: skip
    create_topics(admin_client(settings), settings)
    environment = {**os.environ, **as_environment(settings)}
    logs = workdir / f"logs-{n}"
    logs.mkdir()

    def logged(spec: Any) -> Any:
        return dataclasses.replace(spec, log_path=logs / f"{spec.name}.log")

    specs = [logged(s) for s in app_processes(settings, list(APPS), {}, environment)]
    supervisor = Supervisor(specs, RestartPolicy(delay_s=0.0, max_quick_exits=None))
    supervisor.start_all()
    url = f"http://127.0.0.1:{settings.tracker_port}"
    tenant = f"handover{n}"  # a round of its own: no version of an earlier round is reused
    try:
        wait_until("the first tracker ready", lambda: ready(url), 120, 0.5)
        folder = workdir / f"documents-{n}"
        folder.mkdir()
        names = [f"note-{i}" for i in range(documents)]
        for i, name in enumerate(names):
            submit(settings, str(small_document(folder, i)), tenant, name)
        time.sleep(join_after_s)
        supervisor.add(logged(replica_spec(settings, TRACKER_APP, 2, environment)))
        indexed: set[str] = set()

        def all_indexed() -> bool:
            for record in read_all(settings, topic_name(settings, "events"), timeout_s=30):
                event = orjson.loads(record.value() or b"{}")
                if event.get("type") == "WindowIndexed" and event["tenant_id"] == tenant:
                    indexed.add(event["document_id"])
            return len(indexed) == documents

        wait_until("every document indexed", all_indexed, 600, 3)
        states: dict[str, dict[str, Any] | None] = {}

        def all_completed() -> bool:
            states.update({name: _status(url, tenant, name) for name in names})
            return all(s and s["phase"] == "completed" for s in states.values())

        # The completion checks follow the last window; a lost document never completes.
        with contextlib.suppress(RuntimeError):
            wait_until("every document completed", all_completed, 60, 2)
    finally:
        supervisor.stop_all(60)
    return {
        "round": n,
        "indexed": len(indexed),
        "unknown": sorted(d for d, s in states.items() if s is None),
        "incomplete": sorted(d for d, s in states.items() if s and s["phase"] != "completed"),
        "logs": str(logs),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=26)
    parser.add_argument("--join-after-s", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="docstreams-handover-"))
    base = private_stack_settings(workdir / "stack", blob_dir=workdir / "blobs",
                                  local_source_roots=[workdir], batch_max_wait_s=0.2)  # fmt: skip
    stack = Stack(base)
    stack.up()
    try:
        rounds = [one_round(base, workdir, n, args.documents, args.join_after_s)
                  for n in range(args.rounds)]  # fmt: skip
    finally:
        stack.down()
    print(orjson.dumps({"rounds": rounds}).decode())
    return 1 if any(r["unknown"] or r["incomplete"] for r in rounds) else 0


if __name__ == "__main__":
    sys.exit(main())
