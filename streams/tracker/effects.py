"""What the tracker's actions do outside the fold, each returning the facts it established.

Blocking calls (Weaviate, the blob store): run in an executor thread, through ``until_done``
while Weaviate is down. Every effect is idempotent (Weaviate writes by id, deletes are deletes),
so a crash that redoes one changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TypeVar, assert_never

from streams.adapters.blobstore import LocalBlobStore
from streams.adapters.weaviate_store import ChunkIndex
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
        found = self.index.count(state.tenant_id, state.document_id, version)
        if state.reused_unchanged:  # unchanged content: what its version was switched with
            current = self.index.current(state.tenant_id, state.document_id)
            expected = current.chunks if current and current.version == version else -1
        else:
            expected = state.expected_chunks
        return [IndexCounted(tenant_id=state.tenant_id, document_id=state.document_id,
                             version=version, found=found, expected=expected)]  # fmt: skip

    def _switch(self, state: DocumentState, action: SwitchVersion) -> DocumentCompleted:
        # Order matters: switch search to the new version, then delete the old ones.
        tenant, document = state.tenant_id, state.document_id
        self.index.make_current(tenant, document, action.version, action.chunks)
        self.index.delete_chunks(tenant, document, except_version=action.version)
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
        )


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
