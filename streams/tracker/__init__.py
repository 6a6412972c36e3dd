"""tracker: one state per document, the completion check, signed callbacks, the status API.

A faust-streaming app. Its table ``documents`` (key ``tenant/document``, changelog-backed and
co-partitioned with docs.ingest and docs.events) holds each document's state, folded by
``streams.fold.fold`` from requests, stage events and the facts the tracker's own effects
establish. faust processes at least once (its exactly_once mode is per-partition producers that
swallow transaction errors), which the fold makes harmless: replays change nothing. What faust
does not do for us, done here:
  - read_committed: stage outputs of aborted transactions must never count (a small
    transport subclass; faust only sets it in its exactly_once mode);
  - side effects before the state write, outputs before the state write: a crash in between
    redoes them, and each is idempotent (Weaviate writes by id, callbacks keep their key);
  - no exception ends an agent (faust would restart it and drop the event): Weaviate being
    down is retried until it is back, anything else is logged and counted.

When every window of a version is indexed, the tracker counts that version's objects in
Weaviate; only if the count is what the stages reported does it switch search to the version,
delete the older versions' objects (insert-before-delete: never missing), remove the blob,
and publish DocumentCompleted. Callbacks go through docs.callbacks to a second agent, so a slow
receiver never holds up the fold.

  app.py        the faust app (broker, credentials, read_committed transport, topics, table)
  documents.py  the table, its lock, and settling a fold: effects, outputs, state write
  effects.py    Weaviate, blob store and callback effects, each returning facts to fold
  agents.py     the fold of ingest and events; callback delivery
  sweeps.py     the stalled-document re-check and the retention sweep
  api.py        /documents, /stats, /healthz, /readyz, /metrics
"""

from streams.tracker.app import ReadCommittedTransport, broker_credentials, build_app, run_tracker

__all__ = ["ReadCommittedTransport", "broker_credentials", "build_app", "run_tracker"]
