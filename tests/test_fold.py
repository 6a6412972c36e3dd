"""The tracker's state machine alone (streams/fold.py): pure, no Kafka, the clock passed in.

Events, the facts the tracker's effects report, replays, the re-check's second fold, and the
same fold following a document for `submit --wait` (streams/progress.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streams.fold import (
    Action,
    Callback,
    CheckCompletion,
    Event,
    Fail,
    Forget,
    IndexCounted,
    SwitchVersion,
    TrackedMessage,
    fold,
    fold_again,
)
from streams.messages import (
    CallbackResult,
    DeleteRequested,
    DocumentCompleted,
    DocumentFailed,
    DocumentSubmitted,
    WindowIndexed,
    utc_now,
)
from streams.progress import DocumentProgress
from streams.status import DocumentState, Phase, callback_due
from tests.lifecycle import TENANT, V1, V2, lifecycle

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
HOOK = "https://example.org/hook"


def _fold_all(
    events: Sequence[Event], state: DocumentState | None = None, now: datetime = NOW
) -> tuple[DocumentState, list[Action]]:
    actions: list[Action] = []
    for event in events:
        folded = fold(state, event, now)
        state = folded.state
        actions += folded.actions
    assert state is not None
    return state, actions


def _counted(state: DocumentState, found: int, version: str = V1) -> IndexCounted:
    return IndexCounted(tenant_id=TENANT, document_id="d1", version=version, found=found,
                        expected=state.expected_chunks)  # fmt: skip


def _completed(state: DocumentState, chunks: int = 8) -> DocumentCompleted:
    """What the tracker's version switch reports (streams/tracker/effects.py)."""
    assert state.version is not None
    return DocumentCompleted(tenant_id=TENANT, document_id="d1", submitted_at=state.submitted_at,
                             version=state.version, chunks=chunks)  # fmt: skip


def _comparable(state: DocumentState) -> dict[str, Any]:
    return state.model_dump(exclude={"updated_at"})


# --- requests and stage events --------------------------------------------------------------
def test_folding_never_changes_the_state_it_was_given() -> None:
    """The fold works on a copy (DocumentState.changeable_copy, not a deep copy): the tracker
    keeps the decoded states it read and compares the new one with them."""
    state: DocumentState | None = None
    for event in [*lifecycle(windows=3), _counted(_fold_all(lifecycle(windows=3))[0], 12)]:
        before = state.model_dump() if state is not None else None
        folded = fold(state, event, NOW + timedelta(seconds=1))
        if state is not None:
            assert state.model_dump() == before, type(event).__name__
        state = folded.state


def test_every_window_indexed_asks_for_the_completion_check_once() -> None:
    state, actions = _fold_all(lifecycle())
    assert actions == [CheckCompletion()]
    assert state.all_indexed and state.expected_chunks == 8 and state.tokens_spent == 800


@pytest.mark.parametrize("start", range(2, 10))
def test_replaying_the_tail_of_the_events_changes_nothing(start: int) -> None:
    messages = lifecycle()
    state, _ = _fold_all(messages)
    replayed, _ = _fold_all(messages[start:], state)
    assert _comparable(replayed) == _comparable(state)


def test_a_replayed_request_after_its_events_does_not_reset_the_document() -> None:
    messages = lifecycle()
    state, _ = _fold_all(messages)
    again = fold(state, messages[0], NOW)  # the ingest topic replayed after the events topic
    assert not again.changed and again.state is state and again.state.all_indexed


def test_events_of_an_older_version_are_ignored() -> None:
    state, _ = _fold_all(lifecycle(V2)[:2])
    straggler = WindowIndexed(tenant_id=TENANT, document_id="d1", version=V1, window=0,
                              window_count=2, items=4)  # fmt: skip
    assert not fold(state, straggler, NOW).changed


def test_windows_still_in_flight_after_a_delete_are_removed_again() -> None:
    messages = lifecycle()
    state, _ = _fold_all(messages[:4])
    deleted = fold(state, DeleteRequested(tenant_id=TENANT, document_id="d1"), NOW)
    assert deleted.state.phase == Phase.DELETED and deleted.actions == [Forget()]
    late = fold(deleted.state, messages[-1], NOW)
    assert late.actions == [Forget()] and late.state.phase == Phase.DELETED


def test_a_new_submission_after_a_failure_counts_as_resumed_at_once() -> None:
    state, _ = _fold_all(lifecycle()[:2])
    state.phase = Phase.FAILED
    later = DocumentSubmitted(tenant_id=TENANT, document_id="d1", source="https://example.org/d1",
                              submitted_at=utc_now() + timedelta(seconds=1))  # fmt: skip
    resumed = fold(state, later, NOW)
    assert resumed.changed  # recorded when the request comes, not only when it is planned
    assert resumed.state.phase == Phase.QUEUED and resumed.state.resumed_after_failure
    assert resumed.state.submissions == 2


def test_a_plan_of_a_failed_document_read_again_starts_it_over() -> None:
    # `docstreams dlq replay` re-publishes a request unchanged: its new plan revives the document
    messages = lifecycle()
    state, _ = _fold_all(messages[:3])
    state.phase = Phase.FAILED
    again = fold(state, messages[1], NOW)
    assert again.changed and again.state.phase == Phase.EXTRACTING


# --- the clock ------------------------------------------------------------------------------
def test_a_change_is_stamped_with_the_clock_passed_in_and_the_phase_keeps_its_start() -> None:
    messages = lifecycle(windows=2)
    state, _ = _fold_all(messages[:3])  # submitted, planned, window 0 extracted
    assert state.phase == Phase.EXTRACTING and state.phase_since == state.updated_at == NOW
    later = fold(state, messages[3], NOW + timedelta(minutes=5)).state  # window 0 chunked
    assert later.phase == Phase.EXTRACTING and later.phase_since == NOW
    assert later.updated_at == NOW + timedelta(minutes=5)


def test_an_event_that_changes_nothing_leaves_the_clock_alone() -> None:
    messages = lifecycle()
    state, _ = _fold_all(messages)
    again = fold(state, messages[0], NOW + timedelta(hours=1))  # the request, replayed
    assert not again.changed and again.state.updated_at == NOW


# --- facts of the tracker's effects ---------------------------------------------------------
def test_a_count_that_matches_the_stages_asks_to_switch_to_that_version() -> None:
    state, _ = _fold_all(lifecycle())
    counted = fold(state, _counted(state, found=8), NOW)
    assert counted.actions == [SwitchVersion(V1, 8)] and not counted.changed


def test_a_count_that_differs_fails_the_document_with_both_counts() -> None:
    state, _ = _fold_all(lifecycle())
    (fail,) = fold(state, _counted(state, found=7), NOW).actions
    assert isinstance(fail, Fail) and fail.error_class == "IndexMismatch"
    assert "holds 7 objects" in fail.reason and "reported 8" in fail.reason


def test_a_count_of_a_superseded_version_is_ignored() -> None:
    state, _ = _fold_all(lifecycle(V2))
    counted = fold(state, _counted(state, found=8, version=V1), NOW)
    assert not counted.changed and not counted.actions


def test_the_completion_makes_the_version_current_and_asks_for_the_callback() -> None:
    state, _ = _fold_all(lifecycle(callback_url=HOOK))
    done = fold(state, _completed(state), NOW)
    assert done.state.phase == Phase.COMPLETED and done.actions == [Callback()]
    assert done.state.current_version == V1 and done.state.chunks == 8


def test_the_trackers_own_completion_read_back_from_the_log_changes_nothing() -> None:
    state, _ = _fold_all(lifecycle())
    completed = _completed(state)
    done = fold(state, completed, NOW).state
    again = fold(done, completed, NOW + timedelta(seconds=1))
    assert not again.changed and not again.actions


def test_the_trackers_failure_fails_the_document_and_asks_for_the_callback() -> None:
    state, _ = _fold_all(lifecycle(callback_url=HOOK))
    failure = DocumentFailed(tenant_id=TENANT, document_id="d1", stage="tracker", reason="no",
                             error_class="IndexMismatch", version=V1,
                             submitted_at=state.submitted_at)  # fmt: skip
    failed = fold(state, failure, NOW)
    assert failed.state.phase == Phase.FAILED and failed.actions == [Callback()]
    assert failed.state.error is not None and failed.state.error.stage == "tracker"


def test_a_queued_callback_is_pending_until_its_own_result_arrives() -> None:
    state, _ = _fold_all(lifecycle(callback_url=HOOK))
    state = fold(state, _completed(state), NOW).state
    due = callback_due(state)
    assert due is not None and due.event == "document.completed"
    queued = fold(state, due, NOW).state
    assert queued.callback is not None and queued.callback.outcome == "pending"
    result: dict[str, Any] = {"tenant_id": TENANT, "document_id": "d1", "event": due.event,
                              "outcome": "delivered", "attempts": 1}  # fmt: skip
    other = CallbackResult(**result, idempotency_key="0" * 32)
    assert not fold(queued, other, NOW).changed
    delivered = fold(queued, CallbackResult(**result, idempotency_key=due.idempotency_key), NOW)
    assert delivered.state.callback is not None and delivered.state.callback.outcome == "delivered"


def test_a_request_folded_after_its_own_completion_keeps_it_and_calls_back() -> None:
    messages = lifecycle(callback_url=HOOK)
    state, actions = _fold_all(messages[1:])
    assert actions == [CheckCompletion()] and state.submissions == 1
    state = fold(state, _completed(state), NOW).state
    late = fold(state, messages[0], NOW)
    assert late.actions == [Callback()]
    assert late.state.phase == Phase.COMPLETED and late.state.all_indexed
    assert late.state.callback_url == HOOK and late.state.submissions == 1


def test_a_plan_replayed_after_its_own_completion_changes_nothing() -> None:
    messages = lifecycle()
    state, _ = _fold_all(messages)
    state = fold(state, _completed(state), NOW).state
    again = fold(state, messages[1], NOW)  # DocumentPlanned of the same request, read again
    assert not again.changed and again.state.phase == Phase.COMPLETED and not again.actions


# --- the re-check: the log folded again -----------------------------------------------------
def test_folding_the_log_again_finds_the_completion_check_a_lost_record_held() -> None:
    messages = lifecycle()
    state, _ = _fold_all(messages[:-1])  # the last WindowIndexed never reached the fold
    again = fold_again(state, messages, NOW + timedelta(minutes=5))
    assert again.changed and again.actions == [CheckCompletion()]
    assert again.state.phase_since == NOW  # still indexing: the phase keeps its start


def test_folding_the_log_again_over_a_state_that_saw_it_all_changes_nothing() -> None:
    messages = lifecycle()
    state, _ = _fold_all(messages)
    state = fold(state, _completed(state), NOW).state
    again = fold_again(state, [*messages, _completed(state)], NOW + timedelta(minutes=5))
    assert not again.changed and not again.actions


# --- following a document for `submit --wait` ----------------------------------------------
def _follower(request: TrackedMessage) -> DocumentProgress:
    assert isinstance(request, DocumentSubmitted)
    return DocumentProgress.of_request(TENANT, "d1", request.submitted_at)


def test_a_follower_is_done_only_at_the_trackers_completion() -> None:
    messages = lifecycle()
    follower = _follower(messages[0])
    for event in messages[1:]:  # the events topic: the request itself is on ingest
        follower.apply(event, NOW)
    done_before_the_verdict = follower.done
    assert not done_before_the_verdict and follower.indexed == {0, 1} and follower.chunks == 8
    completed = _completed(follower.state)
    follower.apply(completed, NOW)
    assert follower.done and follower.completed == completed and follower.failure is None
    assert follower.version == V1 and follower.window_count == 2


def test_a_follower_ignores_the_completion_of_an_earlier_request() -> None:
    messages = lifecycle()
    follower = _follower(messages[0])
    for event in messages[1:]:
        follower.apply(event, NOW)
    earlier = _completed(follower.state).model_copy(
        update={"submitted_at": follower.state.submitted_at - timedelta(minutes=1)}  # type: ignore[operator]
    )
    follower.apply(earlier, NOW)
    assert not follower.done


def test_a_follower_learns_of_a_failure_the_tracker_decided() -> None:
    messages = lifecycle()
    follower = _follower(messages[0])
    for event in messages[1:]:
        follower.apply(event, NOW)
    failure = DocumentFailed(tenant_id=TENANT, document_id="d1", stage="tracker",
                             reason="index check failed", error_class="IndexMismatch",
                             version=V1, submitted_at=follower.state.submitted_at)  # fmt: skip
    follower.apply(failure, NOW)
    assert follower.done and follower.failure == failure and follower.completed is None
