"""The tracker's /stats counts: a document in flight that stopped changing counts as stalled."""

from __future__ import annotations

from datetime import timedelta

from streams.messages import utc_now
from streams.status import DocumentState, Phase
from streams.tracker.api import document_stats

NOW = utc_now()


def _state(document: str, phase: Phase, quiet: timedelta) -> DocumentState:
    at = NOW - quiet
    return DocumentState(tenant_id="acme", document_id=document, phase=phase, submitted_at=at,
                         updated_at=at)  # fmt: skip


def test_a_document_in_flight_unchanged_past_the_bound_counts_as_stalled() -> None:
    states = [
        _state("stuck", Phase.INDEXING, timedelta(hours=1)),
        _state("moving", Phase.EMBEDDING, timedelta(seconds=5)),
        _state("done", Phase.COMPLETED, timedelta(days=2)),
    ]
    stats = document_stats(states, stalled_after_s=1800.0, now=NOW)
    assert stats["in_flight"] == 2 and stats["stalled"] == 1 and stats["completed"] == 1
    assert document_stats(states, stalled_after_s=7200.0, now=NOW)["stalled"] == 0
