"""What a chaos run is judged by: both runs' Weaviate objects compared, and the work redone
as Kafka's log shows it (batches written but never committed)."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import numpy as np
import orjson

from docstreams_dev.chaos.plan import TENANT
from streams.adapters.weaviate_store import ChunkIndex
from streams.kafka_clients import read_all
from streams.messages import VectorBatch
from streams.runner import BATCH_HEADER
from streams.settings import Settings
from streams.topics import topic_name

VECTOR_TOLERANCE = 1e-3  # int8 ONNX: batch shapes differ between runs, results within ~1e-6


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
    # An object's place is its content: versions share objects, so (version, window) is where
    # it was first written, not where it is.
    expected = Counter(map(_place, reference.values()))
    places = Counter(map(_place, found.values()))
    repeated = sum(max(0, n - expected[place]) for place, n in places.items())
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
        same = all(a.get(k) == b.get(k) for k in ("text", "page_start", "page_end", "start_s"))
        mismatched += not same or diff > VECTOR_TOLERANCE
    return {
        "expected_chunks": len(reference),
        "found_chunks": len(found),
        "duplicates": repeated + extra,
        "missing": missing,
        "mismatched": mismatched,
        "max_vector_difference": worst,
    }


def _place(o: dict[str, Any]) -> tuple[Any, ...]:
    return (o["document_id"], o.get("anchor"), o["text"], o["page_start"], o["page_end"],
            o.get("start_s"))  # fmt: skip


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
