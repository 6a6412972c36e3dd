"""What the tracker's actions do outside the fold, each returning the facts it established.

Blocking calls (Weaviate, the blob store): run in an executor thread, through ``until_done``
while Weaviate is down. Every effect is idempotent (Weaviate writes by id, deletes are deletes),
so a crash that redoes one changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar, assert_never

from streams.adapters.blobstore import LocalBlobStore
from streams.adapters.weaviate_store import ChunkIndex, CurrentVersion, WindowRecord
from streams.errors import DownstreamUnavailable, TransientError
from streams.fold import (
    Action,
    Callback,
    CheckCompletion,
    Fact,
    Fail,
    Forget,
    IndexCounted,
    SwitchVersion,
)
from streams.messages import DocumentCompleted, DocumentDeleted, DocumentFailed
from streams.settings import Settings
from streams.status import TERMINAL, DocumentState, callback_due

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_BACKOFF_S = 30.0


class Effects:
    """The tracker's writes outside Kafka."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.index = ChunkIndex(settings)
        self.blobs = LocalBlobStore(settings.blob_dir)

    def close(self) -> None:
        self.index.close()

    def carry_out(self, action: Action, state: DocumentState) -> list[Fact]:
        match action:
            case CheckCompletion():
                return self._count(state)
            case SwitchVersion():
                return [self._switch(state, action)]
            case Forget():
                removed = self.index.forget(state.tenant_id, state.document_id)
                self.blobs.delete_document(state.tenant_id, state.document_id)
                return [DocumentDeleted(tenant_id=state.tenant_id, document_id=state.document_id,
                                        objects_deleted=removed)]  # fmt: skip
            case Fail():
                return [_failure(state, action)]
            case Callback():
                due = callback_due(state)
                return [due] if due else []
            case _:
                assert_never(action)

    def _count(self, state: DocumentState) -> list[Fact]:
        version = state.version
        if state.phase in TERMINAL or version is None:
            return []
        tenant, document = state.tenant_id, state.document_id
        current = self.index.current(tenant, document)
        counted = IndexCounted(tenant_id=tenant, document_id=document, version=version,
                               found=0, expected=state.expected_chunks)  # fmt: skip
        if state.reused_unchanged:  # unchanged content: what its version was switched with
            expected = current.chunks if current and current.version == version else -1
            versions = current.versions if current else ()
            found = self.index.count(tenant, document, version, versions)
            return [replace(counted, found=found, expected=expected)]
        if state.base_version is not None:
            if current is None or current.version not in (state.base_version, version):
                problem = (
                    f"another version ({current.version[:12] if current else 'none'}) became "
                    "current while this one was indexed against "
                    f"{state.base_version[:12]}; submit the document again"
                )
                return [replace(counted, problem=problem)]
            if current.version != version:  # (else: switched already, counted again)
                # Objects under anchors no window of the version took over are dropped by it.
                had = {a for anchor, w in current.windows.items() for a in w.sources or (anchor,)}
                kept = {a for window in state.window_keys for a in state.sources(window)}
                self.index.drop_anchors(tenant, document, sorted(had - kept), version)
        found = self.index.count(tenant, document, version, _versions(state, current))
        return [replace(counted, found=found)]

    def _switch(self, state: DocumentState, action: SwitchVersion) -> DocumentCompleted:
        # Order matters: switch search to the new version (one registry write), then delete
        # what it no longer shows.
        tenant, document = state.tenant_id, state.document_id
        current = self.index.current(tenant, document)
        if state.reused_unchanged and current is not None:
            entry = replace(current, chunks=action.chunks)
        else:
            windows = {}  # in window order: the next version's reuse plan reads it so
            for window, key in sorted(state.window_keys.items()):
                anchor, digest, *raw = key.split()
                windows[anchor] = WindowRecord(
                    digest,
                    state.chunks_by_window.get(window, 0),
                    tuple(state.sources(window)),
                    raw[0] if raw else None,
                )
            entry = CurrentVersion(
                version=action.version,
                chunks=action.chunks,
                versions=_versions(state, current),
                fingerprint=state.fingerprint,
                windows=windows,
            )
        self.index.make_current(tenant, document, entry)
        removed = self.index.remove_replaced(tenant, document, entry)
        if state.blob and not self.settings.keep_completed_blobs:
            self.blobs.delete(state.blob)
        return DocumentCompleted(
            tenant_id=tenant,
            document_id=document,
            submitted_at=state.submitted_at,
            version=action.version,
            chunks=action.chunks,
            reused_unchanged=state.reused_unchanged,
            tokens_spent=state.tokens_spent,
            objects_removed=removed,
        )


def _versions(state: DocumentState, current: CurrentVersion | None) -> tuple[str, ...]:
    """The versions whose objects the state's version shows: its own, and its base's."""
    version = state.version or ""
    if state.base_version is None or current is None:
        return (version,)
    shown = current.versions or (current.version,)
    return shown if version in shown else (*shown, version)


def _failure(state: DocumentState, action: Fail) -> DocumentFailed:
    """The tracker's own verdict, published like a stage's: a follower learns of it too."""
    return DocumentFailed(
        tenant_id=state.tenant_id,
        document_id=state.document_id,
        stage="tracker",
        reason=action.reason,
        error_class=action.error_class,
        version=state.version,
        submitted_at=state.submitted_at,
    )


async def until_done(call: Callable[[], T], what: str) -> T:
    """Run a blocking call in a thread; while Weaviate is down, wait and try again."""
    loop = asyncio.get_running_loop()
    delay = 1.0
    while True:
        try:
            return await loop.run_in_executor(None, call)
        except (DownstreamUnavailable, TransientError) as exc:
            log.warning("tracker: %s failed (%s); retrying in %.0fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)
