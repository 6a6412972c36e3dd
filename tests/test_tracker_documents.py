"""Settling a fold (streams/tracker/documents.py): each effect's facts are folded in turn, the
messages among them are sent, and only then is the state written. No Kafka, no Weaviate: the
table, the topics and the index are stand-ins that record what they were asked."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import orjson
from prometheus_client import REGISTRY

from streams.adapters.weaviate_store import CurrentVersion
from streams.fold import CheckCompletion, Folded, fold
from streams.messages import DeleteRequested, utc_now
from streams.settings import Settings
from streams.status import DocumentState, Phase
from streams.tracker.agents import fold_record
from streams.tracker.documents import Documents
from streams.tracker.effects import Effects
from tests.lifecycle import DOCUMENT, TENANT, V1, lifecycle

KEY = f"{TENANT}/{DOCUMENT}"
HOOK = "https://example.org/hook"


class _Index:
    """Weaviate as the tracker sees it: ``found`` objects of any version."""

    def __init__(self, found: int) -> None:
        self.found = found
        self.switched: list[tuple[str, int]] = []

    def count(self, tenant_id: str, document_id: str, version: str | None = None,
              versions: Sequence[str] = ()) -> int:  # fmt: skip
        return self.found

    def current(self, tenant_id: str, document_id: str) -> CurrentVersion | None:
        return None

    def make_current(self, tenant_id: str, document_id: str, entry: CurrentVersion) -> None:
        self.switched.append((entry.version, entry.chunks))

    def remove_replaced(self, tenant_id: str, document_id: str,
                        current: CurrentVersion | None = None) -> int:  # fmt: skip
        return 0

    def forget(self, tenant_id: str, document_id: str) -> int:
        return 3


class _Table(dict[str, bytes]):
    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    @property
    def data(self) -> dict[str, bytes]:
        return self

    async def send_changelog(self, partition: int | None, key: str, value: bytes) -> None:
        self.log.append(f"write {orjson.loads(value)['phase']}")


class _Topic:
    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.sent: list[dict[str, Any]] = []

    async def send(self, key: bytes, value: bytes, force: bool) -> Any:
        self.sent.append(orjson.loads(value))
        self.log.append(f"send {self.sent[-1]['type']}")
        return asyncio.sleep(0)  # the broker's acknowledgement


def _documents(tmp_path: Path, index: _Index, log: list[str]) -> Documents:
    effects = Effects(Settings(blob_dir=tmp_path))
    effects.index = cast(Any, index)
    outputs = {"events": _Topic(log), "callbacks": _Topic(log)}
    return Documents(cast(Any, None), _Table(log), outputs, effects)


def _all_but_the_last_window_indexed() -> tuple[DocumentState, Folded]:
    messages = lifecycle(callback_url=HOOK)
    state: DocumentState | None = None
    for message in messages[:-1]:
        state = fold(state, message, utc_now()).state
    assert state is not None
    last = fold(state, messages[-1], utc_now())
    assert last.actions == [CheckCompletion()]
    return state, last


def _completion_checked(tmp_path: Path, found: int) -> tuple[Documents, _Index, list[str]]:
    """The last window indexed, settled with ``found`` objects in the index."""
    log: list[str] = []
    index = _Index(found)
    documents = _documents(tmp_path, index, log)
    before, folded = _all_but_the_last_window_indexed()
    asyncio.run(documents.settle(KEY, before, folded))
    return documents, index, log


def _finished(outcome: str) -> float:
    value = REGISTRY.get_sample_value("docstreams_documents_finished_total", {"outcome": outcome})
    return value or 0.0


def test_a_count_that_matches_switches_the_version_and_sends_the_verdict_before_the_state(
    tmp_path: Path,
) -> None:
    completions = _finished("completed")
    documents, index, log = _completion_checked(tmp_path, found=8)
    assert index.switched == [(V1, 8)]
    assert log == ["send DocumentCompleted", "send CallbackDue", "write completed"]
    state = documents.get(KEY)
    assert state is not None and state.phase == Phase.COMPLETED and state.chunks == 8
    assert state.callback is not None and state.callback.event == "document.completed"
    assert _finished("completed") == completions + 1


def test_a_count_that_differs_switches_nothing_and_publishes_the_trackers_failure(
    tmp_path: Path,
) -> None:
    documents, index, log = _completion_checked(tmp_path, found=7)
    assert index.switched == []
    assert log == ["send DocumentFailed", "send CallbackDue", "write failed"]
    state = documents.get(KEY)
    assert state is not None and state.error is not None
    assert (state.error.stage, state.error.error_class) == ("tracker", "IndexMismatch")
    assert state.callback is not None and state.callback.event == "document.failed"


def test_a_delete_forgets_the_document_and_publishes_how_many_objects_went(
    tmp_path: Path,
) -> None:
    log: list[str] = []
    documents = _documents(tmp_path, _Index(found=8), log)
    before, _ = _all_but_the_last_window_indexed()
    folded = fold(before, DeleteRequested(tenant_id=TENANT, document_id=DOCUMENT), utc_now())
    asyncio.run(documents.settle(KEY, before, folded))
    assert log == ["send DocumentDeleted", "write deleted"]
    (deleted,) = documents.outputs["events"].sent
    assert deleted["objects_deleted"] == 3


def test_folds_that_ask_for_nothing_are_written_once_per_batch_and_read_back_before_that(
    tmp_path: Path,
) -> None:
    """The fold agent's batch: progress events change the state in memory, the next event reads
    it back, and ``write_pending`` (before faust acknowledges the batch) writes it once."""
    log: list[str] = []
    documents = _documents(tmp_path, _Index(found=12), log)
    messages = lifecycle(callback_url=HOOK, windows=3)

    async def fold_all_but_the_last() -> DocumentState | None:
        for message in messages[:-1]:  # the last one asks for the completion check
            await fold_record(documents, message.to_wire())
        return documents.get(KEY)

    pending = asyncio.run(fold_all_but_the_last())
    assert log == [] and KEY not in documents.table  # nothing written yet, nothing lost either
    expected: DocumentState | None = None
    for message in messages[:-1]:
        expected = fold(expected, message, utc_now()).state
    assert pending is not None and expected is not None
    assert pending.phase == Phase.INDEXING
    times = {"updated_at", "phase_since"}  # when each was folded
    assert pending.model_dump(exclude=times) == expected.model_dump(exclude=times)

    asyncio.run(documents.write_pending())
    assert log == ["write indexing"]
    assert DocumentState.from_bytes(documents.table[KEY]) == pending

    asyncio.run(fold_record(documents, messages[-1].to_wire()))  # an action: written at once
    assert log[1:] == ["send DocumentCompleted", "send CallbackDue", "write completed"]
