"""The tracker's state machine: one document's state, folded from everything that happens to it.

``fold(state, event, now)`` is pure: the clock is passed in, and it returns the new state with
the actions (side effects) the tracker must carry out. What an action finds or does comes back
as a fact (``IndexCounted``, ``DocumentCompleted``, ``DocumentDeleted``, ``DocumentFailed``,
``CallbackDue``) that is folded like any event, so every change of state is made here. The same
fold follows a document for `submit --wait` (streams/progress.py), from the events topic alone:
the tracker publishes its verdicts there (DocumentCompleted, and DocumentFailed of its own).

Updates are idempotent (sets of window numbers, per-window counts, requests ordered by their
own timestamp, verdicts applied once), because the tracker processes at least once and a
replay must change nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, assert_never

import orjson
from pydantic import Field, TypeAdapter

from streams.messages import (
    CallbackDue,
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
)
from streams.status import (
    PHASE_OF_STAGE,
    TERMINAL,
    WINDOW_STAGES,
    CallbackInfo,
    DocumentState,
    ErrorInfo,
    Phase,
    same_state,
)

# --- what is folded -------------------------------------------------------------------------
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


@dataclass(frozen=True)
class IndexCounted:
    """Fact: the index holds ``found`` objects of ``version``; ``expected`` is what the stages
    reported (for unchanged content: what the current version was switched with; -1 if none)."""

    tenant_id: str
    document_id: str
    version: str
    found: int
    expected: int
    problem: str | None = None  # why the count cannot complete the version, if it cannot


# What carrying out an action establishes. The messages among them are published as well.
Fact = IndexCounted | DocumentCompleted | DocumentDeleted | DocumentFailed | CallbackDue
Event = TrackedMessage | IndexCounted | CallbackDue


# --- what the tracker is asked to do --------------------------------------------------------
@dataclass(frozen=True)
class CheckCompletion:
    """Count the version's objects in the index (every window is indexed). -> IndexCounted"""


@dataclass(frozen=True)
class SwitchVersion:
    """Make the counted version the searchable one, then delete the older versions' objects and
    the completed blob. -> DocumentCompleted"""

    version: str
    chunks: int


@dataclass(frozen=True)
class Forget:
    """Delete every object and file of the document. -> DocumentDeleted"""


@dataclass(frozen=True)
class Fail:
    """The tracker gives the document up. -> DocumentFailed (stage "tracker")"""

    reason: str
    error_class: str


@dataclass(frozen=True)
class Callback:
    """Queue the callback of the outcome reached, if the request asked for one. -> CallbackDue"""


Action = CheckCompletion | SwitchVersion | Forget | Fail | Callback


@dataclass
class Folded:
    state: DocumentState
    changed: bool = True
    actions: list[Action] = field(default_factory=list)


# --- the fold -------------------------------------------------------------------------------
def fold(state: DocumentState | None, event: Event, now: datetime) -> Folded:
    """Apply one event to a document's state. Unchanged, the state given is returned as it was."""
    if state is None:
        state = DocumentState(tenant_id=event.tenant_id, document_id=event.document_id)
    result = _apply(state.changeable_copy(), event)
    if not result.changed:
        return Folded(state, changed=False, actions=result.actions)
    result.state.updated_at = now
    if result.state.phase != (state.phase if state.updated_at is not None else None):
        result.state.phase_since = now
    return result


def fold_again(state: DocumentState, events: Iterable[Event], now: datetime) -> Folded:
    """Fold a document's records again onto its state (the stalled-document re-check): the
    final state, and the actions asked for on the way that are still due in it, once each."""
    current, actions = state, list[Action]()
    for event in events:
        folded = fold(current, event, now)
        current, actions = folded.state, [*actions, *folded.actions]
    due = [action for action in dict.fromkeys(actions) if still_due(action, current)]
    if current is not state and current.phase == state.phase:
        current.phase_since = state.phase_since
    return Folded(current, changed=not same_state(current, state), actions=due)


def still_due(action: Action, state: DocumentState) -> bool:
    """Whether an action asked for along the way still fits the state folded in the end."""
    match action:
        case Forget():
            return state.phase == Phase.DELETED
        case CheckCompletion() | SwitchVersion():
            return state.ready_to_check and state.phase not in TERMINAL
        case Fail():
            return state.phase not in TERMINAL
        case Callback():
            return state.phase in (Phase.COMPLETED, Phase.FAILED)
        case _:
            assert_never(action)


def _apply(state: DocumentState, event: Event) -> Folded:
    _note_memory(state, event)
    match event:
        case DocumentSubmitted():
            return _submitted(state, event)
        case DeleteRequested():
            return _delete_requested(state, event)
        case DocumentPlanned():
            return _planned(state, event)
        case WindowExtracted() | WindowChunked() | WindowEmbedded() | WindowIndexed():
            return _window_done(state, event)
        case DocumentFailed():
            return _failed(state, event)
        case IndexCounted():
            return _index_counted(state, event)
        case DocumentCompleted():
            return _completed(state, event)
        case CallbackDue():
            state.callback = CallbackInfo(event=event.event, idempotency_key=event.idempotency_key)
            return Folded(state)
        case CallbackResult():
            return _callback_result(state, event)
        case DocumentDeleted():
            return Folded(state, changed=False)  # Forget's fact: the delete was folded before
        case _:
            assert_never(event)


def _submitted(state: DocumentState, message: DocumentSubmitted) -> Folded:
    # ingest and events are separate topics: a request's own events may be folded before the
    # request itself. Requests are told apart by their submitted_at.
    if state.deleted_at is not None and message.submitted_at <= state.deleted_at:
        return Folded(state, changed=False)
    if state.submitted_at is not None and message.submitted_at < state.submitted_at:
        return Folded(state, changed=False)  # an older request
    started = message.submitted_at != state.submitted_at  # else: seen first through its events
    if started:
        _start_submission(state, message.submitted_at)
    # What only the request carries. If its outcome is already known (its events came first),
    # the callback it asks for is due now.
    details = (message.request_id, message.callback_url)
    if (state.request_id, state.callback_url) == details:
        return Folded(state, changed=started)
    state.request_id, state.callback_url = details
    late = state.phase in (Phase.COMPLETED, Phase.FAILED) and message.callback_url
    return Folded(state, actions=[Callback()] if late and state.callback is None else [])


def _delete_requested(state: DocumentState, message: DeleteRequested) -> Folded:
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
    return Folded(deleted, actions=[Forget()])


def _planned(state: DocumentState, message: DocumentPlanned) -> Folded:
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
    _clear_windows(state)
    state.version = message.version
    state.window_count = message.window_count
    if not message.unchanged:  # else: the pages counted when it was indexed stand
        state.pages = message.pages
    state.size_bytes = message.bytes
    state.content_type, state.blob = message.content_type, message.blob
    state.encoding = message.encoding
    state.planned_at = message.at
    state.reused_unchanged = message.unchanged
    state.base_version, state.fingerprint = message.base_version, message.fingerprint
    state.phase = Phase.INDEXING if message.unchanged else Phase.EXTRACTING
    return Folded(state, actions=[CheckCompletion()] if state.ready_to_check else [])


WindowDone = WindowExtracted | WindowChunked | WindowEmbedded | WindowIndexed


def _window_done(state: DocumentState, message: WindowDone) -> Folded:
    if state.phase == Phase.DELETED:
        # Windows still in flight when the delete came: remove what they wrote.
        forget = isinstance(message, WindowIndexed)
        return Folded(state, changed=False, actions=[Forget()] if forget else [])
    if message.version != state.version:
        return Folded(state, changed=False)  # an older version's straggler
    done = state.done(message.stage)
    done.add(message.window)
    state.windows_done[message.stage] = sorted(done)
    if isinstance(message, WindowExtracted):
        state.failed_pages_by_window[message.window] = message.failed_pages
        if message.anchor and message.digest:
            key = f"{message.anchor} {message.digest} {message.raw_digest or ''}"
            state.window_keys[message.window] = key.strip()
        if message.unchanged:  # it goes no further: its chunks stand, nothing was paid
            for stage in WINDOW_STAGES:
                state.windows_done[stage] = sorted({*state.done(stage), message.window})
            state.unchanged_windows = sorted({*state.unchanged_windows, message.window})
            state.chunks_by_window[message.window] = message.chunks
            _note_sources(state, message.window, message.anchor, message.sources or [])
    elif isinstance(message, WindowEmbedded):
        state.tokens_by_window[message.window] = message.tokens
        state.cached_by_window[message.window] = message.cached
        state.cached_tokens_by_window[message.window] = message.cached_tokens
    elif isinstance(message, WindowIndexed):
        state.chunks_by_window[message.window] = message.items
        # Sparse: only what differs from a window written whole under its own anchor (a large
        # document's state is written on every event).
        if message.written is not None and message.written != message.items:
            state.written_by_window[message.window] = message.written
        if message.dropped:
            state.dropped_by_window[message.window] = message.dropped
        if message.sources is not None:
            _note_sources(state, message.window, message.anchor, message.sources)
    if state.phase in TERMINAL:
        return Folded(state)
    state.phase = _phase(state)
    return Folded(state, actions=[CheckCompletion()] if state.all_indexed else [])


def _failed(state: DocumentState, message: DocumentFailed) -> Folded:
    if _older_request(state, message.submitted_at) or state.phase == Phase.DELETED:
        return Folded(state, changed=False)
    if _newer_request(state, message.submitted_at):
        _start_submission(state, message.submitted_at)
    if state.phase in TERMINAL:
        return Folded(state, changed=False)
    if message.version is not None and state.version not in (None, message.version):
        return Folded(state, changed=False)
    state.phase = Phase.FAILED
    state.failed_at = message.at
    state.error = ErrorInfo(stage=message.stage, reason=message.reason,
                            error_class=message.error_class, at=message.at)  # fmt: skip
    return Folded(state, actions=[Callback()])


def _index_counted(state: DocumentState, fact: IndexCounted) -> Folded:
    """Completed means counted: only the count the stages reported switches the version."""
    stale = state.phase in TERMINAL or fact.version != state.version
    if stale or not state.ready_to_check:
        return Folded(state, changed=False)
    if fact.problem:
        return Folded(state, changed=False, actions=[Fail(fact.problem, "IndexMismatch")])
    if fact.found != fact.expected:
        reason = (
            f"index check failed: Weaviate holds {fact.found} objects of version "
            f"{fact.version[:12]}, the stages reported {fact.expected}"
        )
        return Folded(state, changed=False, actions=[Fail(reason, "IndexMismatch")])
    return Folded(state, changed=False, actions=[SwitchVersion(fact.version, fact.found)])


def _completed(state: DocumentState, message: DocumentCompleted) -> Folded:
    """The version was counted and switched to: the tracker's own verdict, folded once (by the
    tracker when its effect reports it, by a follower when it reads it)."""
    if state.phase == Phase.DELETED or _older_request(state, message.submitted_at):
        return Folded(state, changed=False)
    if state.phase in TERMINAL or state.version not in (None, message.version):
        return Folded(state, changed=False)
    state.phase = Phase.COMPLETED
    state.version = state.current_version = message.version
    state.chunks = message.chunks
    state.objects_removed = message.objects_removed
    state.completed_at = message.at
    return Folded(state, actions=[Callback()])


def _callback_result(state: DocumentState, message: CallbackResult) -> Folded:
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
    _clear_windows(state)


def _clear_windows(state: DocumentState) -> None:
    state.windows_done, state.window_keys, state.unchanged_windows = {}, {}, []
    state.written_by_window, state.dropped_by_window = {}, {}
    state.sources_by_window = {}
    state.objects_removed = 0
    state.chunks_by_window, state.tokens_by_window = {}, {}
    state.cached_by_window, state.failed_pages_by_window = {}, {}
    state.cached_tokens_by_window = {}


def _note_sources(
    state: DocumentState, window: int, anchor: str | None, sources: list[str]
) -> None:
    if sources == ([anchor] if anchor else []):
        state.sources_by_window.pop(window, None)
    else:
        state.sources_by_window[window] = sources


def _phase(state: DocumentState) -> Phase:
    """The first stage that has not finished every window."""
    for stage in WINDOW_STAGES:
        if state.window_count is None or len(state.done(stage)) < state.window_count:
            return PHASE_OF_STAGE[stage]
    return Phase.INDEXING  # all indexed: completing


def _note_memory(state: DocumentState, event: Event) -> None:
    stage = getattr(event, "stage", None)
    rss = getattr(event, "peak_rss_bytes", None)
    if stage and rss:
        mb = round(rss / 2**20, 1)
        state.peak_rss_mb[stage] = max(state.peak_rss_mb.get(stage, 0.0), mb)
