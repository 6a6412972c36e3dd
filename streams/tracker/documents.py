"""The tracker's document states and the one way they change.

A change is folded (streams/fold.py), then settled, in this order: carry out the actions (each
returns facts, folded in turn, which may ask for more), send the messages among the facts, write
the state. A crash anywhere before the write redoes them all on the replayed record: each effect
is idempotent, each callback keeps its key, and faust flushes the changelog before it commits the
record's offset.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any

import faust
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]
from faust.exceptions import ProducerSendError

from streams import metrics
from streams.fold import Action, Folded, fold
from streams.messages import Message, utc_now
from streams.pipeline import DOCUMENT_PARTITIONS
from streams.replay import partition_of
from streams.status import DocumentState
from streams.tracker.effects import MAX_BACKOFF_S, Effects, until_done

if TYPE_CHECKING:
    from streams.fault_injection import CrashPlan

log = logging.getLogger(__name__)

# Set only by tests (streams/fault_injection.py), which is imported only then.
_CRASH_PLAN_VARIABLE = "DOCSTREAMS_TEST_CRASH_PLAN"
DECODED_STATES = 64  # decoded states kept (the documents whose events came last)


def _crash_plan() -> CrashPlan | None:
    if not os.environ.get(_CRASH_PLAN_VARIABLE):
        return None
    from streams.fault_injection import CrashPlan

    return CrashPlan.from_environment()


class Documents:
    """The table of document states (key ``tenant/document``), the lock that lets one state
    change at a time, and the settling of a fold: effects, outputs, state write."""

    def __init__(
        self, app: faust.App, table: Any, outputs: dict[str, Any], effects: Effects
    ) -> None:
        self.app = app
        self.table = table
        self.outputs = outputs  # topic key -> faust topic (events, callbacks)
        self.effects = effects
        # The fold and the sweeps all read a state, await effects, then write it back;
        # interleaved, one would overwrite the other.
        self.lock = asyncio.Lock()
        self.crash_plan = _crash_plan()
        self._decoded: OrderedDict[str, tuple[bytes, DocumentState]] = OrderedDict()
        # States changed by folds that asked for nothing, newer than the table's, to be written
        # once each by ``write_pending`` (they are encoded then, not at every fold).
        self._pending: dict[str, DocumentState] = {}

    def get(self, key: str) -> DocumentState | None:
        """The state (not to be changed in place: the fold works on a copy)."""
        if (pending := self._pending.get(key)) is not None:
            return pending
        stored = self.table.get(key)
        if stored is None:
            return None
        cached = self._decoded.get(key)
        if cached is not None and cached[0] is stored:
            self._decoded.move_to_end(key)
            return cached[1]
        state = DocumentState.from_bytes(stored)
        self._remember(key, stored, state)
        return state

    def _remember(self, key: str, stored: bytes, state: DocumentState) -> None:
        """Keep the decoded state of the documents seen last: a large document's events come
        one after another, and decoding its state each time cost ~1 ms per event."""
        self._decoded[key] = (stored, state)
        self._decoded.move_to_end(key)
        while len(self._decoded) > DECODED_STATES:
            self._decoded.popitem(last=False)

    def owned_partitions(self) -> set[int]:
        """This replica's partitions of the events topic (the table is co-partitioned with it)."""
        events = self.outputs["events"].get_topic_name()
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == events}

    def items(self) -> list[tuple[str, DocumentState]]:
        """The states of this replica's documents. The table may also hold copies of documents
        whose partitions a rebalance moved away (faust's memory store drops only what it
        recovered); a sweep acting on such a copy would overwrite the owner's newer state."""
        mine = self.owned_partitions()
        states = {key: self._decode(key, value) for key, value in list(self.table.items())}
        states.update(self._pending)
        return [(key, state) for key, state in states.items()
                if partition_of(key.encode(), DOCUMENT_PARTITIONS) in mine]  # fmt: skip

    def _decode(self, key: str, stored: bytes) -> DocumentState:
        cached = self._decoded.get(key)
        return cached[1] if cached is not None and cached[0] is stored else (
            DocumentState.from_bytes(stored))  # fmt: skip

    async def write(self, key: str, state: DocumentState) -> None:
        """``table[key] = state``, awaited to the changelog's acknowledgement: faust's own flush
        before an offset commit gives up after 0.1 s without progress, so only this makes the
        state durable before the record that produced it counts as handled."""
        self._pending.pop(key, None)
        value = state.to_bytes()
        self.table.data[key] = value
        self._remember(key, value, state)
        await self.table.send_changelog(None, key, value)

    async def write_pending(self) -> None:
        """Write the states that folds changed without acting (``settle(..., later=True)``), each
        once, to the changelog's acknowledgement: called before their records are acknowledged."""
        async with self.lock:
            while self._pending:
                await self.write(*self._pending.popitem())

    def remove(self, key: str) -> None:
        self._pending.pop(key, None)
        if key in self.table:
            del self.table[key]  # a tombstone in the compacted changelog
        self._decoded.pop(key, None)

    async def send(self, message: Message) -> None:
        """Awaited to the broker's acknowledgement before the state is written: a state that says
        "completed" is never durable while its DocumentCompleted or callback could still be lost
        (faust otherwise only flushes both together at its next commit). force=True: never held
        back as an attachment until the offset commit (stream_publish_on_commit)."""
        topic, delay = self.outputs[message.topic_key], 1.0
        while True:  # the broker restarting is no reason to give up on an event
            try:
                delivery = await topic.send(
                    key=message.kafka_key(), value=message.to_wire(), force=True
                )
                await delivery
                return
            except (KafkaError, ProducerSendError) as exc:
                if isinstance(exc, KafkaError) and not exc.retriable:
                    raise
                log.warning("tracker: sending a %s failed (%s); retrying in %.0fs",
                            type(message).__name__, exc, delay)  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)

    async def settle(
        self, key: str, before: DocumentState | None, folded: Folded, later: bool = False
    ) -> None:
        """Carry out a fold's actions, send the messages they established, write the state (the
        caller holds the lock). ``later``: a state changed without any action is kept as pending;
        the caller makes it durable with ``write_pending`` before the record counts as handled."""
        await self._crash_point("after_fold", key, folded)
        state, changed, outputs = await self._carry_out(key, folded)
        await self._crash_point("after_effects", key, folded)
        for output in outputs:
            await self.send(output)
        await self._crash_point("after_send", key, folded)
        if changed or folded.actions:
            if later and not folded.actions:  # nothing acted on or sent: written with the batch
                self._pending[key] = state
            else:
                await self.write(key, state)
            outcome = state.outcome
            if outcome and (before is None or before.finished_at != state.finished_at):
                metrics.DOCUMENTS_FINISHED.labels(outcome).inc()
                if outcome == "completed":
                    metrics.OBJECTS_REMOVED.inc(state.objects_removed)
        await self._crash_point("after_table_write", key, folded)

    async def _carry_out(
        self, key: str, folded: Folded
    ) -> tuple[DocumentState, bool, list[Message]]:
        """Each action's facts folded in turn; the messages among them, to send."""
        state, changed, outputs = folded.state, folded.changed, list[Message]()
        pending: deque[Action] = deque(folded.actions)
        while pending:
            action = pending.popleft()
            carry_out = functools.partial(self.effects.carry_out, action, state)
            for fact in await until_done(carry_out, f"{type(action).__name__} of {key}"):
                result = fold(state, fact, utc_now())
                state, changed = result.state, changed or result.changed
                pending.extend(result.actions)
                if isinstance(fact, Message):
                    outputs.append(fact)
        return state, changed, outputs

    def dropped(self, key: str, folded: Folded) -> bool:
        """A test's lost delivery: the stalled-document re-check must find the record again."""
        return self._crash_due("drop_event", key, folded)

    async def _crash_point(self, point: str, key: str, folded: Folded) -> None:
        if self.crash_plan is not None and self._crash_due(point, key, folded):
            if point == "after_table_write":
                await self.app.producer.flush()  # the state is durable; the offset is not committed
            self.crash_plan.crash()

    def _crash_due(self, point: str, key: str, folded: Folded) -> bool:
        plan = self.crash_plan
        return plan is not None and bool(folded.actions) and plan.due(point, key)
