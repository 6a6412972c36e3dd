"""The tracker: document state, completion check, versions, signed callbacks, status API.

The fold is tested alone in tests/test_fold.py, settling its actions in
tests/test_tracker_documents.py; here, signatures, then the real stack with `run all` (five
stage processes and the tracker) and a real HTTP receiver for the callbacks.
"""

from __future__ import annotations

import functools
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from docstreams_dev.servers.callback_receiver import Receiver, receiving
from docstreams_dev.stack.process import port_holders
from streams.adapters.blobstore import LocalBlobStore
from streams.adapters.callbacks import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SigningKeys,
    sign,
    verify,
)
from streams.cli import app
from streams.fault_injection import PLAN_VARIABLE, CrashPlan, CrashPoint
from streams.producer import submit
from streams.progress import follow
from streams.settings import Settings, as_environment
from tests.apps_helpers import (
    app_process,
    indexed_count,
    isolated,
    running_apps,
    submit_and_wait,
)
from tests.kafka_helpers import read_topic, wait_for
from tests.pdfs import SAMPLE, numbered_pages, write_pdf

TENANT = "acme"
SECRET = "s3cret-for-acme"


# --- signatures -----------------------------------------------------------------------------
def test_a_signature_verifies_only_for_the_same_key_body_and_a_fresh_timestamp() -> None:
    body, now = b'{"event":"document.completed"}', time.time()
    stamp = str(int(now))
    signature = sign(b"key", stamp, body)
    assert verify(b"key", stamp, body, signature, now=now)
    assert not verify(b"other", stamp, body, signature, now=now)
    assert not verify(b"key", stamp, body + b" ", signature, now=now)
    assert not verify(b"key", stamp, body, signature, now=now + 3600)  # a replayed capture


def test_signing_keys_come_from_settings_and_a_file_that_may_change(tmp_path: Path) -> None:
    file = tmp_path / "keys.json"
    keys = SigningKeys({"acme": SecretStr("from-env"), "*": SecretStr("fallback")}, file)
    assert keys.for_tenant("acme") == b"from-env"
    assert keys.for_tenant("globex") == b"fallback"
    file.write_text('{"acme": "rotated"}')
    assert keys.for_tenant("acme") == b"rotated"


# --- on the real stack ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def crash_plan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where a test asks the tracker to crash at one step (streams/fault_injection.py)."""
    return tmp_path_factory.mktemp("faults") / "crash-plan.json"


@pytest.fixture(scope="module")
def tracked(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory, crash_plan: Path
) -> Iterator[tuple[Settings, psutil.Process, Receiver, str]]:
    settings = isolated(
        stack_settings,
        tmp_path_factory,
        "trk",
        pages_per_window=10,
        batch_max_wait_s=0.2,
        callback_secrets={TENANT: SecretStr(SECRET)},
        callback_allowlist=["127.0.0.1/32"],
        callback_give_up_s=60.0,
        failed_retention_s=20.0,
        tracker_recheck_after_s=5.0,  # a dropped event is found again within seconds
    )
    receiver = Receiver()
    faults = {PLAN_VARIABLE: str(crash_plan)}
    with receiving(receiver) as hook, running_apps(settings, environment=faults) as supervisor:
        wait_for(
            lambda: _tracker_ready(settings),
            timeout_s=90,
            explain=lambda: f"tracker port holders: {port_holders(settings.tracker_port)}",
        )
        yield settings, supervisor, receiver, hook


def _tracker_ready(settings: Settings) -> bool:
    import httpx

    try:
        return httpx.get(f"{settings.status_api_url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _status(settings: Settings, document_id: str) -> dict[str, Any]:
    result = CliRunner().invoke(
        app, ["status", document_id, "--tenant", TENANT, "--json"], env=as_environment(settings)
    )
    assert result.exit_code == 0, result.output
    state: dict[str, Any] = orjson.loads(result.stdout)
    return state


def _search_versions(settings: Settings, query: str, document_id: str) -> set[str]:
    result = CliRunner().invoke(
        app, ["search", query, "--tenant", TENANT, "--json", "--limit", "10"],
        env=as_environment(settings),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return {h["version"] for h in orjson.loads(result.stdout) if h["document_id"] == document_id}


def _the_signed_callback(receiver: Receiver, document_id: str) -> Any:
    """The one callback of a document's outcome, once it came, its signature checked."""
    wait_for(lambda: bool(receiver.for_document(document_id)), timeout_s=60)
    (callback,) = receiver.for_document(document_id)
    _assert_signed(callback)
    return callback


def _assert_signed(received: Any) -> None:
    headers = {k.lower(): v for k, v in received.headers.items()}
    assert verify(SECRET.encode(), headers[TIMESTAMP_HEADER.lower()], received.body,
                  headers[SIGNATURE_HEADER.lower()])  # fmt: skip


@pytest.mark.stack
def test_a_completed_document_is_called_back_signed_and_its_status_says_completed(
    tracked: tuple[Settings, psutil.Process, Receiver, str],
) -> None:
    settings, _, receiver, hook = tracked
    progress = submit_and_wait(settings, str(SAMPLE), "handbook", callback_url=hook)
    assert progress.completed is not None
    callback = _the_signed_callback(receiver, "handbook")
    body = callback.json()
    assert body["event"] == "document.completed" and body["version"] == progress.version
    assert body["chunks"] == progress.chunks == indexed_count(settings, "handbook") > 0
    wait_for(lambda: (_status(settings, "handbook")["callback"] or {}).get("outcome")
             == "delivered", timeout_s=30)  # fmt: skip
    state = _status(settings, "handbook")
    assert state["phase"] == "completed" and state["version"] == progress.version
    assert state["windows"]["planned"] == state["windows"]["indexed"] == 1
    assert state["tokens_spent"] > 0 and state["reused_unchanged"] is False
    assert state["callback"]["idempotency_key"] == callback.headers[IDEMPOTENCY_HEADER]


@pytest.mark.stack
def test_a_failed_document_is_called_back_with_the_stage_and_reason(
    tracked: tuple[Settings, psutil.Process, Receiver, str], tmp_path: Path
) -> None:
    settings, _, receiver, hook = tracked
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    progress = submit_and_wait(settings, str(empty), "empty", callback_url=hook)
    assert progress.failure is not None
    callback = _the_signed_callback(receiver, "empty")
    body = callback.json()
    assert body["event"] == "document.failed"
    error = body["error"]
    assert isinstance(error, dict)
    assert (error["stage"], error["reason"]) == ("download", "empty document (0 bytes)")
    state = _status(settings, "empty")
    assert state["phase"] == "failed" and state["error"]["reason"] == "empty document (0 bytes)"


@pytest.mark.stack
def test_unchanged_content_completes_again_with_no_tokens_and_no_new_objects(
    tracked: tuple[Settings, psutil.Process, Receiver, str],
) -> None:
    settings, _, _, _ = tracked
    first = submit_and_wait(settings, str(SAMPLE), "same")
    objects = indexed_count(settings, "same")
    second = submit_and_wait(settings, str(SAMPLE), "same")
    assert second.completed is not None and second.completed.reused_unchanged
    assert second.completed.tokens_spent == 0 and second.version == first.version
    assert indexed_count(settings, "same") == objects > 0
    state = _status(settings, "same")
    assert state["reused_unchanged"] is True and state["tokens_spent"] == 0
    assert state["submissions"] == 2 and state["phase"] == "completed"


@pytest.mark.stack
def test_a_changed_document_is_searchable_throughout_and_only_in_one_version(
    tracked: tuple[Settings, psutil.Process, Receiver, str], tmp_path: Path
) -> None:
    settings, _, _, _ = tracked
    path = tmp_path / "ledger.pdf"
    write_pdf(path, numbered_pages(12, topic="ledger"))
    old = submit_and_wait(settings, str(path), "ledger")
    write_pdf(path, numbered_pages(60, topic="ledger"))  # new content, same document
    request = submit(settings, str(path), TENANT, "ledger")
    seen: list[set[str]] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        seen.append(_search_versions(settings, "Marker ledger page record", "ledger"))
        state = _status(settings, "ledger")
        # The second submission's end, not the first's: the tracker may not have seen the new
        # request yet when the loop starts.
        if state["submissions"] >= 2 and state["phase"] in ("completed", "failed"):
            break
    new = follow(settings, TENANT, "ledger", request.submitted_at, timeout_s=60)
    assert new.completed is not None and new.version != old.version
    assert all(len(versions) == 1 for versions in seen), seen  # never none, never two
    assert seen[0] == {old.version} and len(seen) > 1
    assert _search_versions(settings, "Marker ledger page record", "ledger") == {new.version}
    # The old version's objects are gone but those the new one reuses (its first 12 pages).
    assert indexed_count(settings, "ledger") == new.chunks
    state = _status(settings, "ledger")
    assert state["edit"]["chunks_reused"] == indexed_count(settings, "ledger", old.version) > 0
    assert state["edit"]["chunks_new"] == indexed_count(settings, "ledger", new.version) > 0


@pytest.mark.stack
def test_delete_removes_every_object_and_marks_the_document_deleted(
    tracked: tuple[Settings, psutil.Process, Receiver, str],
) -> None:
    settings, _, _, _ = tracked
    submit_and_wait(settings, str(SAMPLE), "to-delete")
    assert indexed_count(settings, "to-delete") > 0
    done = CliRunner().invoke(
        app, ["delete", "to-delete", "--tenant", TENANT], env=as_environment(settings)
    )
    assert done.exit_code == 0, done.output
    wait_for(lambda: _status(settings, "to-delete")["phase"] == "deleted", timeout_s=60)
    assert indexed_count(settings, "to-delete") == 0
    assert not _search_versions(settings, "blue lanterns", "to-delete")


@pytest.mark.stack
def test_killing_the_tracker_loses_no_state_and_callbacks_keep_their_key(
    tracked: tuple[Settings, psutil.Process, Receiver, str], tmp_path: Path
) -> None:
    settings, supervisor, receiver, hook = tracked
    before = submit_and_wait(settings, str(SAMPLE), "before-kill", callback_url=hook)
    assert before.completed is not None
    requests = [
        submit(settings, str(write_pdf(tmp_path / f"k{i}.pdf", numbered_pages(60, f"kill{i}"))),
               TENANT, f"kill-{i}", callback_url=hook)
        for i in range(3)
    ]  # fmt: skip
    wait_for(lambda: any(orjson.loads(v)["type"] == "WindowIndexed"
                         and orjson.loads(v)["document_id"].startswith("kill-")
                         for v in read_topic(settings, "events")), timeout_s=120)  # fmt: skip
    victim = app_process(supervisor, "tracker")
    assert victim is not None
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    wait_for(lambda: (p := app_process(supervisor, "tracker")) is not None
             and p.pid != victim.pid, timeout_s=30)  # fmt: skip
    for request in requests:
        progress = follow(settings, TENANT, request.document_id, request.submitted_at, 300)
        assert progress.completed is not None, request.document_id
    wait_for(lambda: _tracker_ready(settings), timeout_s=90)
    assert _status(settings, "before-kill")["phase"] == "completed"  # restored from the changelog
    for request in requests:  # the state may follow its DocumentCompleted after a replay
        wait_for(lambda: _status(settings, request.document_id)["phase"] == "completed", 60)  # noqa: B023
        state = _status(settings, request.document_id)
        assert state["windows"]["indexed"] == state["windows"]["planned"] == 6
        assert state["chunks"] == indexed_count(settings, request.document_id)
        document = request.document_id
        wait_for(functools.partial(receiver.called_back, document), timeout_s=60)
        keys = {r.headers[IDEMPOTENCY_HEADER] for r in receiver.for_document(document)}
        assert len(keys) == 1  # redelivered or not, one outcome has one key


# `run all` stops everything when an app exits within 15 s of its start three times in a row
# (a crash loop); a test that crashes the tracker lets the last restart settle past that first.
_SUPERVISOR_QUICK_EXIT_S = 16.0


@pytest.mark.stack
@pytest.mark.parametrize("point", list(CrashPoint))
def test_a_tracker_crash_or_lost_event_at_any_step_still_completes_with_one_callback_key(
    tracked: tuple[Settings, psutil.Process, Receiver, str], crash_plan: Path, point: CrashPoint
) -> None:
    settings, supervisor, receiver, hook = tracked
    document = f"crash-{point.value.replace('_', '-')}"
    tracker = app_process(supervisor, "tracker")
    assert tracker is not None
    wait_for(lambda: time.time() - tracker.create_time() > _SUPERVISOR_QUICK_EXIT_S, 30)
    CrashPlan.write(crash_plan, point, f"{TENANT}/{document}")
    request = submit(settings, str(SAMPLE), TENANT, document, callback_url=hook)
    crashed = crash_plan.with_name(crash_plan.name + ".done")
    wait_for(crashed.exists, timeout_s=120)  # the tracker reached the point
    crashed.unlink()
    if point == CrashPoint.DROP_EVENT:  # no crash: the completion's event was never folded
        assert tracker.is_running()
    else:
        wait_for(lambda: not tracker.is_running(), timeout_s=10)
    progress = follow(settings, TENANT, document, request.submitted_at, timeout_s=120)
    assert progress.completed is not None, f"not completed after {point.value}"
    wait_for(lambda: _tracker_ready(settings), timeout_s=90)
    # After a crash past the send, DocumentCompleted is out before the restarted tracker has
    # replayed the record into its own state: the status says completed once it has.
    wait_for(lambda: _status(settings, document)["phase"] == "completed", timeout_s=60)
    state = _status(settings, document)
    assert state["version"] == progress.version
    assert state["chunks"] == progress.completed.chunks == indexed_count(settings, document) > 0
    wait_for(functools.partial(receiver.called_back, document), timeout_s=60)
    keys = {r.headers[IDEMPOTENCY_HEADER] for r in receiver.for_document(document)}
    assert keys == {state["callback"]["idempotency_key"]}  # redelivered or not: one key


@pytest.mark.stack
def test_after_the_retention_a_failed_blob_and_a_deleted_state_are_removed(
    tracked: tuple[Settings, psutil.Process, Receiver, str], tmp_path: Path
) -> None:
    settings, _, _, _ = tracked
    locked = write_pdf(tmp_path / "locked.pdf", ["secret"], password="pw")
    failed = submit_and_wait(settings, str(locked), "locked")
    assert failed.failure is not None
    blobs = LocalBlobStore(settings.blob_dir).document_files(TENANT, "locked")
    assert blobs, "the failed document's file is kept for inspection at first"
    submit_and_wait(settings, str(SAMPLE), "gone-later")
    CliRunner().invoke(app, ["delete", "gone-later", "--tenant", TENANT],
                       env=as_environment(settings))  # fmt: skip
    wait_for(lambda: _status(settings, "gone-later")["phase"] == "deleted", timeout_s=60)
    wait_for(lambda: not any(p.exists() for p in blobs), timeout_s=90)
    assert _status(settings, "locked")["phase"] == "failed"  # the state stays, the file goes
    wait_for(lambda: not _tracked(settings, "gone-later"), timeout_s=90)  # state tombstoned


def _tracked(settings: Settings, document_id: str) -> bool:
    result = CliRunner().invoke(
        app, ["status", document_id, "--tenant", TENANT], env=as_environment(settings)
    )
    assert result.exit_code == 0 or "knows no document" in result.output, result.output
    return result.exit_code == 0
