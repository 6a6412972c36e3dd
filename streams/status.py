"""One document's state: the tracker's table value, its status API view and its callback.

The state changes only through the fold (streams/fold.py); this module says what it holds and
how it is shown.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from streams import pipeline
from streams.messages import CallbackDue


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
# The stages that report each window, in order, and each one's phase (streams/pipeline.py).
WINDOW_STAGES = tuple(stage.name for stage in pipeline.WINDOW_STAGES)
PHASE_OF_STAGE = {stage.name: Phase(stage.phase) for stage in pipeline.WINDOW_STAGES}


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
    encoding: str | None = None  # text: the character encoding it came in
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
    # An edit's cost: what the version reuses of its base (the version current when planned).
    base_version: str | None = None
    fingerprint: str | None = None
    window_keys: dict[int, str] = Field(
        default_factory=dict, description="Each window's 'anchor digest', for the registry."
    )
    sources_by_window: dict[int, list[str]] = Field(
        default_factory=dict,
        description="The anchors a window's objects carry, where not just its own anchor.",
    )
    unchanged_windows: list[int] = Field(default_factory=list)
    written_by_window: dict[int, int] = Field(
        default_factory=dict, description="Objects written, where not all of the window's."
    )
    dropped_by_window: dict[int, int] = Field(default_factory=dict, description="Where any.")
    objects_removed: int = 0
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

    def sources(self, window: int) -> list[str]:
        """The anchors the window's objects carry (see sources_by_window)."""
        if window in self.sources_by_window:
            return self.sources_by_window[window]
        key = self.window_keys.get(window)
        return [key.split()[0]] if key else []

    @property
    def expected_chunks(self) -> int:
        return sum(self.chunks_by_window.values())

    def edit(self) -> dict[str, int]:
        """What this version cost against its base: windows and chunks reused or new."""
        unchanged = set(self.unchanged_windows)
        written = sum(
            self.written_by_window.get(window, chunks)
            for window, chunks in self.chunks_by_window.items()
            if window not in unchanged
        )
        return {
            "windows_unchanged": len(unchanged),
            "windows_changed": len(self.done("extract") - unchanged),
            "chunks_reused": self.expected_chunks - written,
            "chunks_new": written,
            "chunks_dropped": sum(self.dropped_by_window.values()),
            "objects_written": written,
            "objects_removed": self.objects_removed,
        }

    @property
    def all_indexed(self) -> bool:
        return self.window_count is not None and len(self.done("index")) >= self.window_count

    @property
    def ready_to_check(self) -> bool:
        """Whether the index may be counted: every window indexed, or nothing to index."""
        return self.all_indexed or self.reused_unchanged or self.window_count == 0

    @property
    def outcome(self) -> str | None:
        """How the document finished, if it has: completed, reused_unchanged, failed, deleted."""
        if self.phase == Phase.COMPLETED:
            return "reused_unchanged" if self.reused_unchanged else "completed"
        return self.phase.value if self.phase in TERMINAL else None

    @property
    def finished_at(self) -> datetime | None:
        return {Phase.COMPLETED: self.completed_at, Phase.FAILED: self.failed_at,
                Phase.DELETED: self.deleted_at}.get(self.phase)  # fmt: skip

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
            "encoding": self.encoding,
            "chunks": self.chunks if self.phase == Phase.COMPLETED else self.expected_chunks,
            "tokens_spent": self.tokens_spent,
            "tokens_from_cache": sum(self.cached_tokens_by_window.values()),
            "vectors_from_cache": sum(self.cached_by_window.values()),
            "reused_unchanged": self.reused_unchanged,
            "base_version": self.base_version,
            "edit": self.edit(),
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
        return self.model_dump_json(exclude_defaults=True).encode()

    @classmethod
    def from_bytes(cls, value: bytes) -> DocumentState:
        return cls.model_validate_json(value)

    def changeable_copy(self) -> DocumentState:
        """A copy whose fields and containers may be changed without changing this state.

        A deep copy, without copying what cannot change (the ints and strings in the per-window
        dicts): a large document's state holds several entries per window, and the fold copies
        the state for every event (a deep copy was ~5 ms per event at 1,000 windows)."""
        update = {name: _copied(value) for name, value in self.__dict__.items()
                  if isinstance(value, dict | list | BaseModel)}  # fmt: skip
        return self.model_copy(update=update)


def _copied(value: Any) -> Any:
    """A container of a state, copied as deep as it holds changeable values (lists in a dict:
    windows done per stage, a window's sources; models: error, callback)."""
    if isinstance(value, BaseModel):
        return value.model_copy(deep=True)
    if isinstance(value, list):
        return list(value)
    if isinstance(next(iter(value.values()), None), list):
        return {key: list(item) for key, item in value.items()}
    return dict(value)  # ints, floats and strings: shared safely


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def same_state(a: DocumentState, b: DocumentState) -> bool:
    """Equal but for when it was last written."""
    volatile = {"updated_at", "phase_since"}
    return all(value == b.__dict__[name] for name, value in a.__dict__.items()
               if name not in volatile)  # fmt: skip


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
            "edit": state.edit() if state.phase == Phase.COMPLETED else None,
            "error": state.error.model_dump(mode="json") if state.error else None,
            "submitted_at": _iso(state.submitted_at),
            "finished_at": _iso(state.completed_at or state.failed_at),
        }
    ).decode()


def callback_due(state: DocumentState) -> CallbackDue | None:
    """The callback of the outcome the document reached, if its request asked for one."""
    if not state.callback_url or state.phase not in (Phase.COMPLETED, Phase.FAILED):
        return None
    event: Literal["document.completed", "document.failed"] = (
        "document.completed" if state.phase == Phase.COMPLETED else "document.failed"
    )
    return CallbackDue(
        tenant_id=state.tenant_id,
        document_id=state.document_id,
        url=state.callback_url,
        event=event,
        idempotency_key=idempotency_key(state, event),
        body=callback_body(state, event),
    )
