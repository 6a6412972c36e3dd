"""The tracker's /stats counts: a document in flight that stopped changing counts as stalled."""

from __future__ import annotations

from datetime import timedelta

from streams.messages import utc_now
from streams.status import DocumentState, Phase
from streams.tracker import _stats


def _stored(document: str, phase: Phase, quiet: timedelta) -> bytes:
    at = utc_now() - quiet
    state = DocumentState(tenant_id="acme", document_id=document, phase=phase, submitted_at=at,
                          updated_at=at)  # fmt: skip
    return state.to_bytes()


def test_a_document_in_flight_unchanged_past_the_bound_counts_as_stalled() -> None:
    table = {
        "acme/stuck": _stored("stuck", Phase.INDEXING, timedelta(hours=1)),
        "acme/moving": _stored("moving", Phase.EMBEDDING, timedelta(seconds=5)),
        "acme/done": _stored("done", Phase.COMPLETED, timedelta(days=2)),
    }
    stats = _stats(table, stalled_after_s=1800.0)
    assert stats["in_flight"] == 2 and stats["stalled"] == 1 and stats["completed"] == 1
    assert _stats(table, stalled_after_s=7200.0)["stalled"] == 0
