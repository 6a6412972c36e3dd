"""Two tracker replicas (`run all --replicas tracker=2`) on the real stack: each answers for every
document (forwarding to the owner of its partition), and when one is lost mid-run the other
takes its partitions over with their state and sends the callbacks it owed, with stable keys;
when it comes back, it recovers the states of the partitions it takes back.

The lost replica is frozen (SIGSTOP), as a node that vanished: it neither leaves the group nor
gets restarted by `run all`, so only the broker's session timeout hands its partitions over.
"""

from __future__ import annotations

import functools
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psutil
import pytest
from pydantic import SecretStr

from docstreams_dev.servers.callback_receiver import Receiver, receiving
from docstreams_dev.stack.process import port_holders
from streams.adapters.callbacks import IDEMPOTENCY_HEADER
from streams.pipeline import DOCUMENT_PARTITIONS
from streams.producer import submit
from streams.progress import follow
from streams.replay import partition_of
from streams.settings import Settings
from tests.apps_helpers import free_port_block, isolated, running_apps
from tests.kafka_helpers import wait_for
from tests.pdfs import SAMPLE

TENANT = "acme"
SESSION_TIMEOUT_S = 10.0  # the tracker's broker_session_timeout (streams/tracker/app.py)


def _documents(prefix: str) -> list[str]:
    """One document id per partition of the tracker's topics, so both replicas own some."""
    found: dict[int, str] = {}
    for n in range(1000):
        name = f"{prefix}-{n}"
        found.setdefault(partition_of(f"{TENANT}/{name}".encode(), DOCUMENT_PARTITIONS), name)
        if len(found) == DOCUMENT_PARTITIONS:
            return [found[p] for p in sorted(found)]
    raise AssertionError("no document id for some partition")


def _get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=3)
    except httpx.TransportError:
        return None


def _status(replica: str, document: str) -> dict[str, Any] | None:
    answer = _get(f"{replica}/documents/{TENANT}/{document}")
    if answer is None or answer.status_code != 200:
        return None
    state: dict[str, Any] = answer.json()
    return state


def _owned(replica: str) -> set[int]:
    answer = _get(f"{replica}/stats")
    return set(answer.json()["partitions"]) if answer and answer.status_code == 200 else set()


def _ready(replica: str) -> bool:
    answer = _get(f"{replica}/readyz")
    return answer is not None and answer.status_code == 200


def _settled(state: dict[str, Any] | None) -> bool:
    return (
        state is not None
        and state["phase"] == "completed"
        and ((state["callback"] or {}).get("outcome") == "delivered")
    )


def _lasting(state: dict[str, Any]) -> dict[str, Any]:
    """What a handover must keep of a completed document's state."""
    return {key: state[key] for key in ("phase", "version", "current_version", "chunks",
                                        "windows", "pages", "submitted_at")} | {
        "idempotency_key": state["callback"]["idempotency_key"]
    }  # fmt: skip


@pytest.fixture
def two_trackers(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, psutil.Process, list[str], Receiver, str]]:
    settings = isolated(
        stack_settings,
        tmp_path_factory,
        "trk2",
        tracker_port=free_port_block(2),
        pages_per_window=2,
        batch_max_wait_s=0.2,
        callback_secrets={TENANT: SecretStr("s3cret")},
        callback_allowlist=["127.0.0.1/32"],
        callback_give_up_s=120.0,
    )
    replicas = [f"http://127.0.0.1:{settings.tracker_port + n}" for n in (0, 1)]
    receiver = Receiver()
    with (
        receiving(receiver) as hook,
        running_apps(settings, replicas={"tracker": 2}) as supervisor,
    ):
        # Both up, and the group settled with the partitions split between them.
        ports = (settings.tracker_port, settings.tracker_port + 1)
        wait_for(
            lambda: all(_ready(r) for r in replicas),
            timeout_s=120,
            explain=lambda: (
                f"ready: {[_ready(r) for r in replicas]}, port holders: "
                f"{[port_holders(p) for p in ports]}"
            ),
        )
        wait_for(
            lambda: (
                sorted(_owned(replicas[0]) | _owned(replicas[1]))
                == list(range(DOCUMENT_PARTITIONS))
            ),
            timeout_s=120,
            explain=lambda: f"owned: {[sorted(_owned(r)) for r in replicas]}",
        )
        yield settings, supervisor, replicas, receiver, hook


@pytest.mark.stack
def test_either_tracker_replica_answers_for_all_and_a_lost_one_hands_over_and_takes_back_state(
    two_trackers: tuple[Settings, psutil.Process, list[str], Receiver, str],
) -> None:
    settings, supervisor, (first, second), receiver, hook = two_trackers
    owned = {first: _owned(first), second: _owned(second)}
    assert owned[first] and owned[second] and not owned[first] & owned[second], owned

    # 1. Every document answered by both replicas, the same state (half of them forwarded).
    before = _documents("before")
    for document in before:
        request = submit(settings, str(SAMPLE), TENANT, document, callback_url=hook)
        assert follow(settings, TENANT, document, request.submitted_at, 240).completed
    for document in before:
        wait_for(lambda: _settled(_status(first, document)), timeout_s=60)  # noqa: B023
        from_first, from_second = _status(first, document), _status(second, document)
        assert from_first is not None and from_second is not None, document
        assert _lasting(from_first) == _lasting(from_second), document
    kept = {document: _lasting(_status(first, document) or {}) for document in before}

    # 2. Documents in flight, then the second replica is lost.
    during = _documents("during")
    requests = [submit(settings, str(SAMPLE), TENANT, d, callback_url=hook) for d in during]
    lost = next(p for p in supervisor.children()
                if p.cmdline()[-1:] == ["tracker"]
                and p.environ()["DOCSTREAMS_INSTANCE_ID"].endswith("-2"))  # fmt: skip
    lost.send_signal(signal.SIGSTOP)
    frozen_at = time.monotonic()
    try:
        # The first replica owns every partition once the broker has dropped the lost member,
        # and answers for all the documents, the lost one's included, with their state.
        wait_for(lambda: _owned(first) == set(range(DOCUMENT_PARTITIONS)), timeout_s=90)
        handed_over_s = time.monotonic() - frozen_at
        assert handed_over_s < SESSION_TIMEOUT_S + 30, handed_over_s
        for document in before:
            wait_for(lambda: _status(first, document) is not None, timeout_s=60)  # noqa: B023
            assert _lasting(_status(first, document) or {}) == kept[document], document
        for request in requests:
            progress = follow(settings, TENANT, request.document_id, request.submitted_at, 240)
            assert progress.completed is not None, request.document_id
        for document in before + during:
            wait_for(lambda: _settled(_status(first, document)), timeout_s=90)  # noqa: B023
            wait_for(functools.partial(receiver.called_back, document), timeout_s=60)
            keys = {r.headers[IDEMPOTENCY_HEADER] for r in receiver.for_document(document)}
            state = _status(first, document) or {}
            assert keys == {state["callback"]["idempotency_key"]}, document  # one outcome, one key
    finally:
        lost.send_signal(signal.SIGKILL)  # `run all` restarts it

    # 3. The replaced replica joins again and takes back half the partitions: it recovers the
    # states the first one wrote for them meanwhile (each on its document's partition).
    wait_for(lambda: bool(_owned(second)) and _owned(first) | _owned(second)
             == set(range(DOCUMENT_PARTITIONS)), timeout_s=120)  # fmt: skip
    wait_for(lambda: _ready(second), timeout_s=60)
    for document in before + during:
        from_first, from_second = _status(first, document), _status(second, document)
        assert from_first is not None and from_second is not None, document
        assert _settled(from_second) and _lasting(from_first) == _lasting(from_second), document
        if document in kept:
            assert _lasting(from_second) == kept[document], document
