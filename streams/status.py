"""One document's state, folded from its requests and stage events (the tracker's table value).

``fold`` is pure: state + message -> new state + the side effects the tracker must carry out.
Updates are idempotent (sets of window numbers, per-window counts, ordering by the request's
own timestamp), because the tracker processes at least once and a replay must change nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from streams.messages import (
    CallbackResult,
    DeleteRequested,
    DocumentCompleted,
    DocumentDeleted,
    DocumentFailed,
    DocumentPlanned,
    DocumentSubmitted,
    WindowChunked,
    WindowEmbedded,
    WindowExtracted,
    WindowIndexed,
    utc_now,
)


class Phase(StrEnum):
    QUEUED = "queued"  # submitted; waiting for or being downloaded
    EXTRACTING = "extracting"
    CHUNKING = "chunking"
    EMBEDDING = "embedding"
    INDEXING = "indexing"
    COMPLETED = "completed"
    FAILED = "failed"
    DELETED = "deleted"


TERMINAL = frozenset({Phase.COMPLETED, Phase.FAILED, Phase.DELETED})
WINDOW_STAGES = ("extract", "chunk", "embed", "index")
_PHASE_OF_STAGE = {
    "extract": Phase.EXTRACTING,
    "chunk": Phase.CHUNKING,
    "embed": Phase.EMBEDDING,
    "index": Phase.INDEXING,
}

TrackedMessage = Annotated[
    DocumentSubmitted
    | DeleteRequested
    | DocumentPlanned
    | WindowExtracted
    | WindowChunked
    | WindowEmbedded
    | WindowIndexed
    | DocumentFailed
    | DocumentCompleted
    | DocumentDeleted
    | CallbackResult,
    Field(discriminator="type"),
]
_TRACKED: TypeAdapter[TrackedMessage] = TypeAdapter(TrackedMessage)


def decode_tracked(value: bytes) -> TrackedMessage:
    """A record of the ingest or events topic as a message (ValueError if it is none)."""
    return _TRACKED.validate_python(orjson.loads(value))


class ErrorInfo(BaseModel):
    stage: str
    reason: str
    error_class: str
    at: datetime


class CallbackInfo(BaseModel):
    event: str
    idempotency_key: str
    outcome: Literal["pending", "delivered", "failed", "skipped"] = "pending"
    status_code: int | None = None
    attempts: int = 0
    detail: str | None = None
    at: datetime | None = None


class DocumentState(BaseModel):
    model_config = ConfigDict(extra="ignore")

    tenant_id: str
    document_id: str
    phase: Phase = Phase.QUEUED
    phase_since: datetime | None = Field(default=None, description="When the phase last changed.")
    version: str | None = Field(default=None, description="Version of the latest submission.")
    current_version: str | None = Field(default=None, description="The searchable version.")
    submitted_at: datetime | None = None
    request_id: str | None = None
    callback_url: str | None = None
    submissions: int = 0
    resumed_after_failure: bool = False
    content_type: str | None = None
    pages: int = 0
    size_bytes: int = 0
    blob: str | None = None
    files_removed: bool = False  # the retention sweep removed the document's downloaded files
    window_count: int | None = None
    windows_done: dict[str, list[int]] = Field(default_factory=dict)
    chunks_by_window: dict[int, int] = Field(default_factory=dict)
    tokens_by_window: dict[int, int] = Field(default_factory=dict)
    cached_by_window: dict[int, int] = Field(default_factory=dict)
    cached_tokens_by_window: dict[int, int] = Field(default_factory=dict)
    failed_pages_by_window: dict[int, int] = Field(default_factory=dict)
    reused_unchanged: bool = False
    chunks: int = 0
    error: ErrorInfo | None = None
    callback: CallbackInfo | None = None
    peak_rss_mb: dict[str, float] = Field(default_factory=dict)
    planned_at: datetime | None = None
    completed_at: datetime | None = None
    failed_at: datetime | None = None
    deleted_at: datetime | None = None
    updated_at: datetime | None = None

    # --- derived ----------------------------------------------------------------------------
    def done(self, stage: str) -> set[int]:
        return set(self.windows_done.get(stage, ()))

    @property
    def tokens_spent(self) -> int:
        return sum(self.tokens_by_window.values())

    @property
    def expected_chunks(self) -> int:
        return sum(self.chunks_by_window.values())

    @property
    def all_indexed(self) -> bool:
        return self.window_count is not None and len(self.done("index")) >= self.window_count

    @property
    def quiet_since(self) -> datetime | None:
        """Since when the state has not changed (its submission if it never did)."""
        return self.updated_at or self.submitted_at

    @property
    def progress(self) -> float:
        """0..1: windows done over all window stages (1 once completed)."""
        if self.phase == Phase.COMPLETED:
            return 1.0
        if not self.window_count:
            return 0.0
        done = sum(len(self.done(s)) for s in WINDOW_STAGES)
        return done / (self.window_count * len(WINDOW_STAGES))

    def public(self) -> dict[str, Any]:
        """The status API's view."""
        return {
            "tenant_id": self.tenant_id,
            "document_id": self.document_id,
            "phase": self.phase.value,
            "version": self.version,
            "current_version": self.current_version,
            "windows": {
                "planned": self.window_count,
                "extracted": len(self.done("extract")),
                "chunked": len(self.done("chunk")),
                "embedded": len(self.done("embed")),
                "indexed": len(self.done("index")),
            },
            "progress": round(self.progress, 4),
            "pages": self.pages,
            "failed_pages": sum(self.failed_pages_by_window.values()),
            "bytes": self.size_bytes,
            "content_type": self.content_type,
            "chunks": self.chunks if self.phase == Phase.COMPLETED else self.expected_chunks,
            "tokens_spent": self.tokens_spent,
            "tokens_from_cache": sum(self.cached_tokens_by_window.values()),
            "vectors_from_cache": sum(self.cached_by_window.values()),
            "reused_unchanged": self.reused_unchanged,
            "submissions": self.submissions,
            "resumed_after_failure": self.resumed_after_failure,
            "error": self.error.model_dump(mode="json") if self.error else None,
            "callback": self.callback.model_dump(mode="json") if self.callback else None,
            "peak_rss_mb": self.peak_rss_mb,
            "request_id": self.request_id,
            "submitted_at": _iso(self.submitted_at),
            "planned_at": _iso(self.planned_at),
            "completed_at": _iso(self.completed_at),
            "failed_at": _iso(self.failed_at),
            "deleted_at": _iso(self.deleted_at),
            "updated_at": _iso(self.updated_at),
            "phase_since": _iso(self.phase_since),
        }

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json", exclude_defaults=True))

    @classmethod
    def from_bytes(cls, value: bytes) -> DocumentState:
        return cls.model_validate(orjson.loads(value))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# --- side effects the tracker carries out ---------------------------------------------------
class Action(StrEnum):
    CHECK_COMPLETION = "check_completion"  # every window indexed: verify count, switch version
    FORGET = "forget"  # delete every object of the document
    CALLBACK_FAILED = "callback_failed"  # send the failure callback
    CALLBACK = "callback"  # send the callback of the outcome already reached


@dataclass
class Folded:
    state: DocumentState
    changed: bool = True
    actions: list[Action] = field(default_factory=list)


def fold(state: DocumentState | None, message: TrackedMessage) -> Folded:
    """Apply one message to a document's state."""
    if state is None:
        state = DocumentState(tenant_id=message.tenant_id, document_id=message.document_id)
    new = state.model_copy(deep=True)
    before = state.phase if state.updated_at is not None else None
    result = _apply(new, message)
    if result.changed:
        now = utc_now()
        result.state.updated_at = now
        if result.state.phase != before:
            result.state.phase_since = now
    return result


def same_state(a: DocumentState, b: DocumentState) -> bool:
    """Equal but for when it was last written."""
    volatile = {"updated_at", "phase_since"}
    return a.model_dump(exclude=volatile) == b.model_dump(exclude=volatile)


def _apply(state: DocumentState, message: TrackedMessage) -> Folded:
    _note_memory(state, message)
    match message:
        case DocumentSubmitted():
            # ingest and events are separate topics: a request's own events may be folded
            # before the request itself. Requests are told apart by their submitted_at.
            if state.deleted_at is not None and message.submitted_at <= state.deleted_at:
                return Folded(state, changed=False)
            if state.submitted_at is not None and message.submitted_at < state.submitted_at:
                return Folded(state, changed=False)  # an older request
            if message.submitted_at == state.submitted_at:
                return _request_details(state, message)  # seen first through its events
            _start_submission(state, message.submitted_at)
            return _request_details(state, message)
        case DeleteRequested():
            if state.deleted_at is not None and message.requested_at <= state.deleted_at:
                return Folded(state, changed=False)
            if state.submitted_at is not None and message.requested_at <= state.submitted_at:
                return Folded(state, changed=False)  # a newer submission supersedes it
            deleted = DocumentState(
                tenant_id=state.tenant_id,
                document_id=state.document_id,
                phase=Phase.DELETED,
                deleted_at=message.requested_at,
                submissions=state.submissions,
                blob=state.blob,
            )
            return Folded(deleted, actions=[Action.FORGET])
        case DocumentPlanned():
            if state.phase == Phase.DELETED or _older_request(state, message.submitted_at):
                return Folded(state, changed=False)
            if (
                state.phase == Phase.COMPLETED
                and message.submitted_at == state.submitted_at
                and message.version == state.version
            ):  # replayed after its own completion (a re-check ran ahead of the live fold)
                return Folded(state, changed=False)
            if _newer_request(state, message.submitted_at):
                _start_submission(state, message.submitted_at)
            state.version = message.version
            state.window_count = message.window_count
            if not message.unchanged:  # else: the pages counted when it was indexed stand
                state.pages = message.pages
            state.size_bytes = message.bytes
            state.content_type, state.blob = message.content_type, message.blob
            state.planned_at = message.at
            state.windows_done = {}
            state.chunks_by_window, state.tokens_by_window = {}, {}
            state.cached_by_window, state.failed_pages_by_window = {}, {}
            state.cached_tokens_by_window = {}
            state.reused_unchanged = message.unchanged
            state.phase = Phase.INDEXING if message.unchanged else Phase.EXTRACTING
            check = message.unchanged or message.window_count == 0
            return Folded(state, actions=[Action.CHECK_COMPLETION] if check else [])
        case WindowExtracted() | WindowChunked() | WindowEmbedded() | WindowIndexed():
            if state.phase == Phase.DELETED:
                # Windows still in flight when the delete came: remove what they wrote.
                forget = isinstance(message, WindowIndexed)
                return Folded(state, changed=False, actions=[Action.FORGET] if forget else [])
            if message.version != state.version:
                return Folded(state, changed=False)  # an older version's straggler
            done = state.done(message.stage)
            done.add(message.window)
            state.windows_done[message.stage] = sorted(done)
            if isinstance(message, WindowExtracted):
                state.failed_pages_by_window[message.window] = message.failed_pages
            elif isinstance(message, WindowEmbedded):
                state.tokens_by_window[message.window] = message.tokens
                state.cached_by_window[message.window] = message.cached
                state.cached_tokens_by_window[message.window] = message.cached_tokens
            elif isinstance(message, WindowIndexed):
                state.chunks_by_window[message.window] = message.items
            if state.phase in TERMINAL:
                return Folded(state)
            state.phase = _phase(state)
            if state.all_indexed:
                return Folded(state, actions=[Action.CHECK_COMPLETION])
            return Folded(state)
        case DocumentFailed():
            if _older_request(state, message.submitted_at) or state.phase == Phase.DELETED:
                return Folded(state, changed=False)
            if _newer_request(state, message.submitted_at):
                _start_submission(state, message.submitted_at)
            if state.phase in TERMINAL:
                return Folded(state, changed=False)
            if message.version is not None and state.version not in (None, message.version):
                return Folded(state, changed=False)
            fail(state, message.stage, message.reason, message.error_class, message.at)
            return Folded(state, actions=[Action.CALLBACK_FAILED])
        case CallbackResult():
            if state.callback is None or state.callback.idempotency_key != message.idempotency_key:
                return Folded(state, changed=False)
            state.callback = state.callback.model_copy(
                update={
                    "outcome": message.outcome,
                    "status_code": message.status_code,
                    "attempts": message.attempts,
                    "detail": message.detail,
                    "at": message.at,
                }
            )
            return Folded(state)
        case DocumentCompleted() | DocumentDeleted():
            return Folded(state, changed=False)  # the tracker's own record; already applied


def _older_request(state: DocumentState, submitted_at: datetime | None) -> bool:
    return None not in (submitted_at, state.submitted_at) and submitted_at < state.submitted_at  # type: ignore[operator]


def _newer_request(state: DocumentState, submitted_at: datetime | None) -> bool:
    return submitted_at is not None and (
        state.submitted_at is None or submitted_at > state.submitted_at
    )


def _start_submission(state: DocumentState, submitted_at: datetime | None) -> None:
    """A new request: progress starts over (the current version stays searchable)."""
    state.resumed_after_failure = state.phase == Phase.FAILED
    state.phase = Phase.QUEUED
    state.submitted_at = submitted_at
    state.request_id = state.callback_url = None
    state.submissions += 1
    state.error = None
    state.callback = None
    state.reused_unchanged = False
    state.files_removed = False
    state.deleted_at = None
    state.completed_at = state.failed_at = None
    state.window_count = None
    state.windows_done = {}
    state.chunks_by_window, state.tokens_by_window = {}, {}
    state.cached_by_window, state.failed_pages_by_window = {}, {}
    state.cached_tokens_by_window = {}


def _request_details(state: DocumentState, message: DocumentSubmitted) -> Folded:
    """What only the request carries. If its outcome is already known (its events came
    first), the callback it asks for is due now."""
    details = (message.request_id, message.callback_url)
    if (state.request_id, state.callback_url) == details:
        return Folded(state, changed=False)
    state.request_id, state.callback_url = details
    late = state.phase in (Phase.COMPLETED, Phase.FAILED) and message.callback_url
    return Folded(state, actions=[Action.CALLBACK] if late and state.callback is None else [])


def _phase(state: DocumentState) -> Phase:
    """The first stage that has not finished every window."""
    for stage in WINDOW_STAGES:
        if state.window_count is None or len(state.done(stage)) < state.window_count:
            return _PHASE_OF_STAGE[stage]
    return Phase.INDEXING  # all indexed: completing


def fail(state: DocumentState, stage: str, reason: str, error_class: str, at: datetime) -> None:
    state.phase = Phase.FAILED
    state.phase_since = state.failed_at = at
    state.error = ErrorInfo(stage=stage, reason=reason, error_class=error_class, at=at)


def complete(state: DocumentState, chunks: int) -> None:
    state.phase = Phase.COMPLETED
    state.current_version = state.version
    state.chunks = chunks
    state.phase_since = state.completed_at = utc_now()


def _note_memory(state: DocumentState, message: TrackedMessage) -> None:
    stage = getattr(message, "stage", None)
    rss = getattr(message, "peak_rss_bytes", None)
    if stage and rss:
        mb = round(rss / 2**20, 1)
        state.peak_rss_mb[stage] = max(state.peak_rss_mb.get(stage, 0.0), mb)


def idempotency_key(state: DocumentState, event: str) -> str:
    """One key per outcome of one submission: the same on every redelivery and retry."""
    submitted = state.submitted_at.isoformat() if state.submitted_at else ""
    seed = f"{state.tenant_id}/{state.document_id}/{submitted}/{state.version}/{event}"
    return hashlib.sha256(seed.encode()).hexdigest()[:32]


def callback_body(state: DocumentState, event: str) -> str:
    """What the caller receives: the outcome, never internal bookkeeping."""
    return orjson.dumps(
        {
            "event": event,
            "tenant_id": state.tenant_id,
            "document_id": state.document_id,
            "request_id": state.request_id,
            "version": state.version,
            "phase": state.phase.value,
            "chunks": state.chunks,
            "pages": state.pages,
            "tokens_spent": state.tokens_spent,
            "reused_unchanged": state.reused_unchanged,
            "error": state.error.model_dump(mode="json") if state.error else None,
            "submitted_at": _iso(state.submitted_at),
            "finished_at": _iso(state.completed_at or state.failed_at),
        }
    ).decode()
