"""tracker: one state per document, the completion check, signed callbacks, the status API.

A faust-streaming app. Its table ``documents`` (key ``tenant/document``, changelog-backed and
co-partitioned with docs.ingest and docs.events) holds each document's state, folded by
``streams.status.fold`` from requests and stage events. faust processes at least once (its
exactly_once mode is per-partition producers that swallow transaction errors), which the
fold makes harmless: replays change nothing. What faust does not do for us, done here:
  - read_committed: stage outputs of aborted transactions must never count (a small
    transport subclass; faust only sets it in its exactly_once mode);
  - side effects before the state write, outputs before the state write: a crash in between
    redoes them, and each is idempotent (Weaviate writes by id, callbacks keep their key);
  - no exception ends an agent (faust would restart it and drop the event): Weaviate being
    down is retried until it is back, anything else is logged and counted.

When every window of a version is indexed, the tracker counts that version's objects in
Weaviate; only if the count is what the stages reported does it switch search to the version,
delete the older versions' objects (insert-before-delete: never missing), remove the blob,
and mark the document completed. Callbacks go through docs.callbacks to a second agent, so a
slow receiver never holds up the fold.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import tempfile
import time
from collections import Counter as Tally
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

import faust
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]
from faust.exceptions import ProducerSendError, SameNode
from faust.transport.drivers import aiokafka as faust_aiokafka
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, generate_latest

from streams import replay
from streams.adapters.blobstore import LocalBlobStore
from streams.adapters.callbacks import CallbackSender, SigningKeys
from streams.adapters.fetch import AddressGuard
from streams.adapters.weaviate_store import ChunkIndex
from streams.errors import DownstreamUnavailable, TransientError
from streams.fault_injection import CrashPlan, CrashPoint
from streams.messages import (
    CallbackDue,
    CallbackResult,
    DocumentCompleted,
    DocumentDeleted,
    Message,
    utc_now,
)
from streams.pipeline import TRACKER_APP, TRACKER_TABLE
from streams.settings import Settings
from streams.status import (
    TERMINAL,
    Action,
    CallbackInfo,
    DocumentState,
    Folded,
    Phase,
    TrackedMessage,
    callback_body,
    complete,
    decode_tracked,
    fail,
    fold,
    idempotency_key,
    same_state,
)
from streams.topics import topic_name

log = logging.getLogger(__name__)
T = TypeVar("T")

_PARTITIONS = 6  # = docs.ingest and docs.events: the table is co-partitioned with both
_MAX_BACKOFF_S = 30.0
_CALLBACK_CONCURRENCY = 4
_FOLD_GIVE_UP_S = 600.0  # an event that keeps failing (not an outage) then fails its document
_RECHECK_MAX_WAIT_S = 3600.0


class UnfoldableEvent(Exception):
    """The pure fold raised on an event: retrying cannot help."""


def _applies(action: Action, state: DocumentState) -> bool:
    """Whether an action collected while re-folding a document still fits its final state."""
    if action == Action.FORGET:
        return state.phase == Phase.DELETED
    if action == Action.CHECK_COMPLETION:
        ready = state.all_indexed or state.reused_unchanged or state.window_count == 0
        return ready and state.phase not in TERMINAL
    if action == Action.CALLBACK_FAILED:
        return state.phase == Phase.FAILED
    return state.phase in (Phase.COMPLETED, Phase.FAILED)  # CALLBACK


FOLDED = Counter(
    "docstreams_tracker_records_total",
    "Records the tracker folded, by outcome (applied, unchanged, undecodable, error).",
    ["outcome"],
)
CALLBACKS = Counter(
    "docstreams_callbacks_total", "Callbacks by outcome (delivered, failed, skipped).", ["outcome"]
)
COMPLETIONS = Counter(
    "docstreams_documents_finished_total",
    "Documents the tracker finished, by outcome (completed, reused_unchanged, failed, deleted).",
    ["outcome"],
)
RECHECKS = Counter(
    "docstreams_tracker_rechecks_total",
    "Stalled documents folded again from the log, by outcome (unchanged: nothing was missed; "
    "recovered: the re-check found records the live fold had missed).",
    ["outcome"],
)
DOCUMENTS = Gauge(
    "docstreams_documents", "Documents by phase, in this tracker's partitions.", ["phase"]
)
IN_FLIGHT = Gauge(
    "docstreams_documents_in_flight", "Documents submitted and not yet completed or failed."
)
STALLED = Gauge(
    "docstreams_documents_stalled",
    "Documents in flight whose state has not changed for TRACKER_STALLED_AFTER_S.",
)


# --- faust plumbing ---------------------------------------------------------------------------
class _ReadCommittedThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._isolation_level = "read_committed"  # aborted stage outputs never count
        return consumer


class _ReadCommittedConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> Any:
        return _ReadCommittedThread(self, loop=self.loop, beacon=self.beacon)


class ReadCommittedTransport(faust_aiokafka.Transport):
    """faust's aiokafka transport, reading only committed records (URL scheme ``docstreams``,
    registered as a ``faust.transports`` entry point)."""

    Consumer = _ReadCommittedConsumer


# --- side effects -----------------------------------------------------------------------------
class Effects:
    """The tracker's writes outside Kafka (blocking; run in an executor thread)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.index = ChunkIndex(settings)
        self.blobs = LocalBlobStore(settings.blob_dir)

    def check_completion(self, state: DocumentState) -> list[Message]:
        version = state.version
        if state.phase in TERMINAL or version is None:
            return []
        found = self.index.count(state.tenant_id, state.document_id, version)
        if state.reused_unchanged:
            current = self.index.current(state.tenant_id, state.document_id)
            expected = current.chunks if current and current.version == version else -1
        else:
            expected = state.expected_chunks
        if found != expected:
            reason = (
                f"index check failed: Weaviate holds {found} objects of version "
                f"{version[:12]}, the stages reported {expected}"
            )
            fail(state, "tracker", reason, "IndexMismatch", utc_now())
            COMPLETIONS.labels("failed").inc()
            return self._callback(state, "document.failed")
        # Order matters: switch search to the new version, then delete the old ones.
        self.index.make_current(state.tenant_id, state.document_id, version, found)
        self.index.delete_chunks(state.tenant_id, state.document_id, except_version=version)
        if state.blob and not self.settings.keep_completed_blobs:
            self.blobs.delete(state.blob)
        complete(state, found)
        COMPLETIONS.labels("reused_unchanged" if state.reused_unchanged else "completed").inc()
        done: list[Message] = [
            DocumentCompleted(
                tenant_id=state.tenant_id,
                document_id=state.document_id,
                submitted_at=state.submitted_at,
                version=version,
                chunks=found,
                reused_unchanged=state.reused_unchanged,
                tokens_spent=state.tokens_spent,
            )
        ]
        return done + self._callback(state, "document.completed")

    def forget(self, state: DocumentState) -> list[Message]:
        removed = self.index.forget(state.tenant_id, state.document_id)
        self.blobs.delete_document(state.tenant_id, state.document_id)
        COMPLETIONS.labels("deleted").inc()
        return [
            DocumentDeleted(
                tenant_id=state.tenant_id, document_id=state.document_id, objects_deleted=removed
            )
        ]

    def _callback(self, state: DocumentState, event: str) -> list[Message]:
        if not state.callback_url:
            return []
        key = idempotency_key(state, event)
        state.callback = CallbackInfo(event=event, idempotency_key=key)
        return [
            CallbackDue(
                tenant_id=state.tenant_id,
                document_id=state.document_id,
                url=state.callback_url,
                event=event,  # type: ignore[arg-type]
                idempotency_key=key,
                body=callback_body(state, event),
            )
        ]

    def carry_out(self, action: Action, state: DocumentState) -> list[Message]:
        if action == Action.CHECK_COMPLETION:
            return self.check_completion(state)
        if action == Action.FORGET:
            return self.forget(state)
        if action == Action.CALLBACK_FAILED:
            COMPLETIONS.labels("failed").inc()
            return self._callback(state, "document.failed")
        if action == Action.CALLBACK:
            event = "document.completed" if state.phase == Phase.COMPLETED else "document.failed"
            return self._callback(state, event)
        raise AssertionError(action)


async def _until_done(call: Callable[[], T], what: str) -> T:
    """Run a blocking call in a thread; while Weaviate is down, wait and try again."""
    loop = asyncio.get_running_loop()
    delay = 1.0
    while True:
        try:
            return await loop.run_in_executor(None, call)
        except (DownstreamUnavailable, TransientError) as exc:
            log.warning("tracker: %s failed (%s); retrying in %.0fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_BACKOFF_S)


# --- the app ----------------------------------------------------------------------------------
def broker_credentials(settings: Settings) -> faust.SASLCredentials | faust.SSLCredentials | None:
    """The stages' Kafka security settings, for aiokafka (the tracker's client)."""
    protocol = settings.kafka_security_protocol
    context = None
    if protocol.endswith("SSL"):
        cafile = str(settings.kafka_ssl_ca_location) if settings.kafka_ssl_ca_location else None
        context = ssl.create_default_context(cafile=cafile)
    if protocol.startswith("SASL"):
        password = settings.kafka_sasl_password
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=password.get_secret_value() if password else None,
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    return faust.SSLCredentials(context) if context else None


def build_app(settings: Settings) -> faust.App:
    servers = [s.strip() for s in settings.bootstrap_servers.split(",") if s.strip()]
    app = faust.App(
        f"{settings.topic_prefix}{TRACKER_APP}",
        broker=[f"docstreams://{s}" for s in servers],
        store="memory://",  # rebuilt from the compacted changelog on start
        # faust still makes a data dir (default: ./<app id>-data in the working directory);
        # with a memory store it stays empty, so a temp dir will do.
        datadir=str(Path(tempfile.gettempdir()) / f"docstreams-{settings.topic_prefix}tracker"),
        topic_partitions=_PARTITIONS,
        topic_replication_factor=1,
        table_standby_replicas=0,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        consumer_group_instance_id=settings.instance_id,  # static membership: fast restarts
        broker_credentials=broker_credentials(settings),
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        producer_max_request_size=4 * 2**20,
        web_bind=settings.tracker_host,
        web_port=settings.tracker_port,
        web_host=settings.tracker_advertised_host or settings.tracker_host,
        web_stats_enabled=False,
        web_graph_enabled=False,
        web_tables_enabled=False,
        web_router_enabled=False,
        web_metrics_enabled=False,
        web_in_thread=False,
    )
    effects = Effects(settings)
    sender = CallbackSender(
        SigningKeys(settings.callback_secrets, settings.callback_secrets_file),
        AddressGuard(settings.callback_allowlist, settings.outbound_ports),
        timeout_s=settings.callback_timeout_s,
        give_up_s=settings.callback_give_up_s,
    )
    sources = app.topic(
        topic_name(settings, "ingest"),
        topic_name(settings, "events"),
        key_type=bytes,
        value_type=bytes,
    )
    events = app.topic(topic_name(settings, "events"), key_type=bytes, value_type=bytes)
    callbacks = app.topic(topic_name(settings, "callbacks"), key_type=bytes, value_type=bytes)
    # use_partitioner: a write goes to the murmur2 partition of its key, which is the partition
    # of the document's records (every docstreams producer uses murmur2), so the table stays
    # co-partitioned, and the retention sweep may write outside an event.
    table = app.Table(TRACKER_TABLE, partitions=_PARTITIONS, key_type=str, value_type=bytes,
                      use_partitioner=True)  # fmt: skip
    outputs_by_topic = {"events": events, "callbacks": callbacks}
    # One document state changes at a time: the agent's fold and the sweeps' writes both read a
    # state, await effects, then write it back; interleaved, one would overwrite the other.
    state_lock = asyncio.Lock()
    crash_plan = CrashPlan.from_environment()
    rechecked_at: dict[str, tuple[float, float]] = {}  # key -> (when, wait before the next)

    async def send(message: Message) -> None:
        # Awaited to the broker's acknowledgement before the state is written: a state that says
        # "completed" is never durable while its DocumentCompleted or callback could still be
        # lost (faust otherwise only flushes both together at its next commit). force=True: never
        # held back as an attachment until the offset commit (stream_publish_on_commit).
        topic, delay = outputs_by_topic[message.topic_key], 1.0
        while True:  # the broker restarting is no reason to give up on an event
            try:
                delivery = await topic.send(
                    key=message.kafka_key(), value=message.to_wire(), force=True
                )
                await delivery  # acknowledged before the state that follows from it is written
                return
            except (KafkaError, ProducerSendError) as exc:
                if isinstance(exc, KafkaError) and not exc.retriable:
                    raise
                log.warning("tracker: sending a %s failed (%s); retrying in %.0fs",
                            type(message).__name__, exc, delay)  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_BACKOFF_S)

    async def crash_point(point: CrashPoint, key: str, folded: Folded) -> None:
        if folded.actions and crash_plan.due(point, key):
            if point == CrashPoint.AFTER_TABLE_WRITE:
                await app.producer.flush()  # the state is durable; the offset is not committed
            crash_plan.crash()

    async def apply(key: str, folded: Folded) -> None:
        """Carry out a fold's effects, send their outputs, then write the state, in this order:
        a crash anywhere before the write redoes them all on the replayed event (each effect is
        idempotent, each callback keeps its key), and faust flushes the changelog before it
        commits the event's offset."""
        await crash_point(CrashPoint.AFTER_FOLD, key, folded)
        outputs: list[Message] = []
        for action in folded.actions:
            carry_out = functools.partial(effects.carry_out, action, folded.state)
            outputs += await _until_done(carry_out, f"{action} of {key}")
        await crash_point(CrashPoint.AFTER_EFFECTS, key, folded)
        for output in outputs:
            await send(output)
        await crash_point(CrashPoint.AFTER_SEND, key, folded)
        if folded.changed or folded.actions:
            await write_state(key, folded.state)
        await crash_point(CrashPoint.AFTER_TABLE_WRITE, key, folded)

    async def write_state(key: str, state: DocumentState) -> None:
        """``table[key] = state``, awaited to the changelog's acknowledgement: faust's own flush
        before an offset commit gives up after 0.1 s without progress, so only this makes the
        state durable before the record that produced it counts as handled."""
        value = state.to_bytes()
        table.data[key] = value
        await table.send_changelog(None, key, value)

    async def handle(message: TrackedMessage) -> None:
        key = f"{message.tenant_id}/{message.document_id}"
        async with state_lock:
            stored = table.get(key)
            try:
                folded = fold(DocumentState.from_bytes(stored) if stored else None, message)
            except Exception as exc:  # the fold is pure: trying again would fail again
                raise UnfoldableEvent(exc) from exc
            if folded.actions and crash_plan.due(CrashPoint.DROP_EVENT, key):
                return  # a test's lost delivery: the stalled-document re-check must find it
            await apply(key, folded)
        FOLDED.labels("applied" if folded.changed or folded.actions else "unchanged").inc()

    async def fail_document(message: TrackedMessage, error: BaseException) -> None:
        """An event the tracker cannot handle: the document fails with a reason (and its caller
        is told) rather than waiting forever for an event the tracker has given up on."""
        key = f"{message.tenant_id}/{message.document_id}"
        async with state_lock:
            stored = table.get(key)
            state = DocumentState.from_bytes(stored) if stored else None
            if state is None:
                state = DocumentState(tenant_id=message.tenant_id, document_id=message.document_id)
            if state.phase in TERMINAL:
                return
            problem = type(error).__name__
            reason = f"the tracker could not process a {message.type} event ({problem})"
            fail(state, "tracker", reason, "TrackerError", utc_now())
            COMPLETIONS.labels("failed").inc()
            await apply(key, Folded(state, actions=[Action.CALLBACK]))

    @app.agent(sources)
    async def fold_events(stream: Any) -> None:
        async for value in stream:
            try:
                message = decode_tracked(value)
            except ValueError as exc:
                FOLDED.labels("undecodable").inc()
                log.warning("tracker: skipping a record that is not a tracked message: %s", exc)
                continue
            # No exception may leave the agent: faust would restart it and drop the event.
            # Weaviate outages and broker restarts are waited out below this; anything else is
            # retried for _FOLD_GIVE_UP_S, then the document fails with a reason.
            give_up, delay = time.monotonic() + _FOLD_GIVE_UP_S, 1.0
            while True:
                try:
                    await handle(message)
                    break
                except Exception as exc:
                    FOLDED.labels("error").inc()
                    log.exception("tracker: could not handle a %s of %s/%s", message.type,
                                  message.tenant_id, message.document_id)  # fmt: skip
                    if isinstance(exc, UnfoldableEvent) or time.monotonic() > give_up:
                        with contextlib.suppress(Exception):
                            await fail_document(message, exc.__cause__ or exc)
                        break
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _MAX_BACKOFF_S)

    async def recheck(key: str) -> bool:
        """Fold the document's records again from the log (streams/replay.py); whether that
        found anything the live fold had missed."""
        loop = asyncio.get_running_loop()
        stored = table.get(key)
        if stored is None:
            return False
        since = DocumentState.from_bytes(stored).submitted_at
        if since is None:
            return False
        records: list[bytes] = []
        for topic in (topic_name(settings, "ingest"), topic_name(settings, "events")):
            read = functools.partial(replay.records_of, settings, topic, key.encode(), since)
            records += await loop.run_in_executor(None, read)
        async with state_lock:
            stored = table.get(key)
            if stored is None:
                return False
            before = DocumentState.from_bytes(stored)
            state, actions = before, list[Action]()
            for raw in records:
                try:
                    folded = fold(state, decode_tracked(raw))
                except ValueError:
                    continue
                state, actions = folded.state, [*actions, *folded.actions]
            actions = [a for a in dict.fromkeys(actions) if _applies(a, state)]
            if state.phase == before.phase:
                state.phase_since = before.phase_since
            if not actions and same_state(state, before):
                RECHECKS.labels("unchanged").inc()
                return False
            RECHECKS.labels("recovered").inc()
            log.warning("tracker: re-check of %s found what the live fold missed (%s)", key,
                        ", ".join(a.value for a in actions) or "state")  # fmt: skip
            await apply(key, Folded(state, actions=actions))
            return True

    @app.timer(interval=max(1.0, min(30.0, settings.tracker_recheck_after_s / 2)))  # type: ignore[untyped-decorator]
    async def recheck_stalled() -> None:
        """Documents in flight whose state has not changed for TRACKER_RECHECK_AFTER_S are
        folded again from the log: a lost delivery cannot leave one waiting forever. A document
        the re-check finds nothing new for waits twice as long before the next (at most an
        hour); only this replica's partitions, and not while they are being reassigned."""
        if app.rebalancing:
            return
        events_topic = topic_name(settings, "events")
        mine = {tp.partition for tp in app.consumer.assignment() if tp.topic == events_topic}
        now = time.monotonic()
        cutoff = utc_now() - timedelta(seconds=settings.tracker_recheck_after_s)
        for key, value in list(table.items()):
            if replay.partition_of(key.encode(), _PARTITIONS) not in mine:
                rechecked_at.pop(key, None)
                continue
            state = DocumentState.from_bytes(value)
            quiet_since = state.quiet_since
            if state.phase in TERMINAL or quiet_since is None or quiet_since > cutoff:
                rechecked_at.pop(key, None)
                continue
            last, wait = rechecked_at.get(key, (0.0, settings.tracker_recheck_after_s))
            if now - last < wait:
                continue
            try:
                found = await recheck(key)
            except Exception:  # the next sweep tries again
                log.exception("tracker: re-check of %s failed", key)
                found = False
            rechecked_at[key] = (now, settings.tracker_recheck_after_s if found else
                                 min(wait * 2, _RECHECK_MAX_WAIT_S))  # fmt: skip

    @app.agent(callbacks, concurrency=_CALLBACK_CONCURRENCY)
    async def deliver_callbacks(stream: Any) -> None:
        loop = asyncio.get_running_loop()
        async for value in stream:
            try:
                due = CallbackDue.from_wire(value)
            except ValueError as exc:
                log.warning("tracker: skipping an invalid callback record: %s", exc)
                continue
            delivery = await loop.run_in_executor(None, sender.deliver, due)
            CALLBACKS.labels(delivery.outcome).inc()
            log.info("callback %s for %s/%s: %s", due.event, due.tenant_id, due.document_id,
                     delivery.outcome)  # fmt: skip
            await send(
                CallbackResult(
                    tenant_id=due.tenant_id,
                    document_id=due.document_id,
                    idempotency_key=due.idempotency_key,
                    event=due.event,
                    outcome=delivery.outcome,
                    status_code=delivery.status_code,
                    attempts=delivery.attempts,
                    detail=(delivery.detail or "")[:4000] or None,
                )
            )

    @app.timer(interval=min(60.0, settings.failed_retention_s))  # type: ignore[untyped-decorator]
    async def sweep() -> None:
        """After the retention: a failed document's files, a deleted document's state."""
        cutoff = utc_now() - timedelta(seconds=settings.failed_retention_s)
        for key, value in list(table.items()):
            state = DocumentState.from_bytes(value)
            if state.phase == Phase.DELETED and state.deleted_at and state.deleted_at < cutoff:
                async with state_lock:
                    current = table.get(key)
                    if current is None or DocumentState.from_bytes(current).phase != Phase.DELETED:
                        continue
                    del table[key]  # a tombstone in the compacted changelog
                log.info("tracker: forgot deleted document %s", key)
            elif (
                state.phase == Phase.FAILED
                and not state.files_removed
                and (state.failed_at or cutoff) < cutoff
            ):
                remove = functools.partial(
                    effects.blobs.delete_document, state.tenant_id, state.document_id
                )
                await _until_done(remove, f"file cleanup of {key}")
                async with state_lock:
                    current = table.get(key)
                    if current is None or DocumentState.from_bytes(current).phase != Phase.FAILED:
                        continue  # submitted again meanwhile: its new files stay
                    state = DocumentState.from_bytes(current)
                    table[key] = state.model_copy(update={"files_removed": True}).to_bytes()
                log.info("tracker: removed the files of failed document %s", key)

    # --- status API -----------------------------------------------------------------------
    @app.page("/documents/{tenant}/{document}")
    async def document_status(web: Any, request: Any, tenant: str, document: str) -> Any:
        key = f"{tenant}/{document}"
        try:
            return await app.router.route_req(table.name, key, web, request)
        except SameNode:
            pass
        stored = table.get(key)
        if stored is None:
            return web.json({"error": f"no document {key}"}, status=404)
        return web.json(DocumentState.from_bytes(stored).public())

    @app.page("/stats")
    async def stats(web: Any, request: Any) -> Any:
        return web.json(_stats(table, settings.tracker_stalled_after_s))

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"live": True})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        recovery = cast(Any, app.tables).recovery
        ready = not app.rebalancing and recovery.completed.is_set()
        return web.json({"ready": ready}, status=200 if ready else 503)

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        counts = _stats(table, settings.tracker_stalled_after_s)
        for phase in Phase:
            DOCUMENTS.labels(phase.value).set(counts["by_phase"].get(phase.value, 0))
        IN_FLIGHT.set(counts["in_flight"])
        STALLED.set(counts["stalled"])
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    return app


def _stats(table: Any, stalled_after_s: float) -> dict[str, Any]:
    """Counts over the documents in this replica's partitions."""
    by_phase: Tally[str] = Tally()
    resumed = stalled = 0
    progress: list[float] = []
    cutoff = utc_now() - timedelta(seconds=stalled_after_s)
    for value in list(table.values()):
        state = DocumentState.from_bytes(value)
        by_phase[state.phase.value] += 1
        resumed += state.resumed_after_failure and state.phase == Phase.COMPLETED
        if state.phase not in TERMINAL:
            progress.append(state.progress)
            quiet_since = state.quiet_since
            stalled += quiet_since is not None and quiet_since < cutoff
    return {
        "documents": sum(by_phase.values()),
        "by_phase": dict(by_phase),
        "completed": by_phase[Phase.COMPLETED.value],
        "failed": by_phase[Phase.FAILED.value],
        "deleted": by_phase[Phase.DELETED.value],
        "in_flight": len(progress),
        "stalled": stalled,
        "stalled_after_s": stalled_after_s,
        "resumed_after_failure": resumed,
        "average_progress_in_flight": round(sum(progress) / len(progress), 4) if progress else None,
    }


def run_tracker(settings: Settings) -> None:
    from faust.worker import Worker

    app = build_app(settings)
    Worker(app, loglevel="INFO", quiet=True).execute_from_commandline()
