"""The tracker's timers: the stalled-document re-check and the retention sweep.

Re-check: a document in flight whose state has not changed for TRACKER_RECHECK_AFTER_S is
folded again from the log (streams/replay.py), so a lost delivery cannot leave it waiting
forever. One the re-check finds nothing new for waits twice as long before the next (at most an
hour). Only this replica's partitions, and not while they are being reassigned.

Retention: after FAILED_RETENTION_S, a failed document's files and a deleted document's state.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from datetime import datetime, timedelta

import faust

from streams import metrics, replay
from streams.fold import TrackedMessage, decode_tracked, fold_again
from streams.messages import utc_now
from streams.settings import Settings
from streams.status import TERMINAL, DocumentState, Phase
from streams.topics import topic_name
from streams.tracker.documents import Documents
from streams.tracker.effects import until_done

log = logging.getLogger(__name__)

RECHECK_MAX_WAIT_S = 3600.0


class Rechecks:
    """When each stalled document of this replica was last re-checked, and how long to wait."""

    def __init__(self, app: faust.App, documents: Documents, settings: Settings) -> None:
        self.app, self.documents, self.settings = app, documents, settings
        self.last: dict[str, tuple[float, float]] = {}  # key -> (when, wait before the next)

    async def sweep(self) -> None:
        if self.app.rebalancing:
            return
        now, after_s = time.monotonic(), self.settings.tracker_recheck_after_s
        cutoff = utc_now() - timedelta(seconds=after_s)
        for key, state in self.documents.items():
            if not _stalled(state, cutoff):
                self.last.pop(key, None)
                continue
            last, wait = self.last.get(key, (0.0, after_s))
            if now - last < wait:
                continue
            try:
                found = await self.recheck(key)
            except Exception:  # the next sweep tries again
                log.exception("tracker: re-check of %s failed", key)
                found = False
            self.last[key] = (now, after_s if found else min(wait * 2, RECHECK_MAX_WAIT_S))

    async def recheck(self, key: str) -> bool:
        """Fold the document's records again from the log; whether that found anything the live
        fold had missed."""
        stored = self.documents.get(key)
        if stored is None or stored.submitted_at is None:
            return False
        records = await self._records(key, stored.submitted_at)
        async with self.documents.lock:
            before = self.documents.get(key)
            if before is None:
                return False
            folded = fold_again(before, records, utc_now())
            if not folded.changed and not folded.actions:
                metrics.TRACKER_RECHECKS.labels("unchanged").inc()
                return False
            metrics.TRACKER_RECHECKS.labels("recovered").inc()
            found = ", ".join(type(a).__name__ for a in folded.actions) or "state"
            log.warning("tracker: re-check of %s found what the live fold missed (%s)", key, found)
            await self.documents.settle(key, before, folded)
            return True

    async def _records(self, key: str, since: datetime) -> list[TrackedMessage]:
        loop = asyncio.get_running_loop()
        records: list[TrackedMessage] = []
        for topic in (topic_name(self.settings, "ingest"), topic_name(self.settings, "events")):
            read = functools.partial(replay.records_of, self.settings, topic, key.encode(), since)
            for raw in await loop.run_in_executor(None, read):
                try:
                    records.append(decode_tracked(raw))
                except ValueError:
                    continue
        return records


def _stalled(state: DocumentState, cutoff: datetime) -> bool:
    """In flight and unchanged since ``cutoff``."""
    quiet_since = state.quiet_since
    return state.phase not in TERMINAL and quiet_since is not None and quiet_since <= cutoff


async def sweep_retention(documents: Documents, settings: Settings) -> None:
    """After the retention: a failed document's files, a deleted document's state."""
    cutoff = utc_now() - timedelta(seconds=settings.failed_retention_s)
    for key, state in documents.items():
        if state.phase == Phase.DELETED and state.deleted_at and state.deleted_at < cutoff:
            async with documents.lock:
                current = documents.get(key)
                if current is None or current.phase != Phase.DELETED:
                    continue
                documents.remove(key)
            log.info("tracker: forgot deleted document %s", key)
        elif (
            state.phase == Phase.FAILED
            and not state.files_removed
            and (state.failed_at or cutoff) < cutoff
        ):
            blobs = documents.effects.blobs
            remove = functools.partial(blobs.delete_document, state.tenant_id, state.document_id)
            await until_done(remove, f"file cleanup of {key}")
            async with documents.lock:
                current = documents.get(key)
                if current is None or current.phase != Phase.FAILED:
                    continue  # submitted again meanwhile: its new files stay
                await documents.write(key, current.model_copy(update={"files_removed": True}))
            log.info("tracker: removed the files of failed document %s", key)


def start_sweeps(app: faust.App, documents: Documents, settings: Settings) -> None:
    rechecks = Rechecks(app, documents, settings)
    recheck_every = max(1.0, min(30.0, settings.tracker_recheck_after_s / 2))

    @app.timer(interval=recheck_every, name="recheck_stalled")  # type: ignore[untyped-decorator]
    async def recheck_stalled() -> None:
        await rechecks.sweep()

    @app.timer(interval=min(60.0, settings.failed_retention_s), name="sweep_retention")  # type: ignore[untyped-decorator]
    async def retention() -> None:
        await sweep_retention(documents, settings)
