"""The tracker's HTTP API on faust's web server: document status, counts, health, metrics.

A request for a document on another replica's partition is forwarded to that replica, the
owner of the document's partition of the events topic (the table is co-partitioned with it).
Counts are the replica's own documents (streams/tracker/documents.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, cast

import faust
from faust.exceptions import SameNode
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams import metrics
from streams.messages import utc_now
from streams.pipeline import DOCUMENT_PARTITIONS
from streams.settings import Settings
from streams.status import TERMINAL, DocumentState, Phase
from streams.topics import topic_name
from streams.tracker.documents import Documents


def document_stats(
    states: Iterable[DocumentState], stalled_after_s: float, now: datetime
) -> dict[str, Any]:
    """Counts over the documents in this replica's partitions."""
    by_phase: Counter[str] = Counter()
    resumed = stalled = 0
    progress: list[float] = []
    cutoff = now - timedelta(seconds=stalled_after_s)
    for state in states:
        by_phase[state.phase.value] += 1
        resumed += state.resumed_after_failure and state.phase == Phase.COMPLETED
        if state.phase not in TERMINAL:
            progress.append(state.progress)
            quiet_since = state.quiet_since
            stalled += quiet_since is not None and quiet_since < cutoff
    return {
        "documents": sum(by_phase.values()),
        "by_phase": dict(by_phase),
        "completed": by_phase[Phase.COMPLETED.value],
        "failed": by_phase[Phase.FAILED.value],
        "deleted": by_phase[Phase.DELETED.value],
        "in_flight": len(progress),
        "stalled": stalled,
        "stalled_after_s": stalled_after_s,
        "resumed_after_failure": resumed,
        "average_progress_in_flight": round(sum(progress) / len(progress), 4) if progress else None,
    }


def start_api(app: faust.App, documents: Documents, settings: Settings) -> None:
    events = app.topic(topic_name(settings, "events"), key_type=bytes, value_type=bytes)

    def stats() -> dict[str, Any]:
        states = (state for _, state in documents.items())
        return document_stats(states, settings.tracker_stalled_after_s, utc_now())

    @app.page("/documents/{tenant}/{document}")
    async def document_status(web: Any, request: Any, tenant: str, document: str) -> Any:
        key = f"{tenant}/{document}"
        try:
            return await app.router.route_topic_req(events, key.encode(), web, request)
        except SameNode:
            pass
        state = documents.get(key)
        if state is None:
            return web.json({"error": f"no document {key}"}, status=404)
        return web.json(state.public())

    @app.page("/stats")
    async def stats_page(web: Any, request: Any) -> Any:
        # Per replica, and saying so: a sum over replicas would need every one to answer.
        scope = {"scope": "replica", "replica": str(app.conf.canonical_url),
                 "partitions": sorted(documents.owned_partitions()),
                 "of_partitions": DOCUMENT_PARTITIONS}  # fmt: skip
        return web.json({**stats(), **scope})

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"live": True})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        recovery = cast(Any, app.tables).recovery
        ready = not app.rebalancing and recovery.completed.is_set()
        return web.json({"ready": ready}, status=200 if ready else 503)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        counts = stats()
        for phase in Phase:
            metrics.DOCUMENTS.labels(phase.value).set(counts["by_phase"].get(phase.value, 0))
        metrics.DOCUMENTS_IN_FLIGHT.set(counts["in_flight"])
        metrics.DOCUMENTS_STALLED.set(counts["stalled"])
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])
