"""The tracker's two agents: the fold of requests and events, and the callback deliveries.

No exception may leave an agent: faust would restart it and drop the record. Weaviate outages
and broker restarts are waited out below this; an error of the (pure) fold fails the document at
once; any other error is retried for ``FOLD_GIVE_UP_S``, then the document fails with a reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import faust

from streams import metrics
from streams.adapters.callbacks import CallbackSender, SigningKeys
from streams.adapters.fetch import AddressGuard
from streams.fold import Fail, Folded, TrackedMessage, decode_tracked, fold
from streams.messages import CallbackDue, CallbackResult, utc_now
from streams.settings import Settings
from streams.status import TERMINAL, DocumentState
from streams.tracker.documents import Documents
from streams.tracker.effects import MAX_BACKOFF_S

log = logging.getLogger(__name__)

CALLBACK_CONCURRENCY = 4
FOLD_BATCH = 500  # records folded before their states are written (TRACKER_FOLD_BATCH_WAIT_S)
FOLD_GIVE_UP_S = 600.0  # an event that keeps failing (not an outage) then fails its document


class UnfoldableEvent(Exception):
    """The pure fold raised on an event: retrying cannot help."""


def document_key(message: TrackedMessage) -> str:
    return f"{message.tenant_id}/{message.document_id}"


async def fold_record(documents: Documents, value: bytes) -> None:
    """One record of the ingest or events topic, folded and settled, or its document failed."""
    try:
        message = decode_tracked(value)
    except ValueError as exc:
        metrics.TRACKER_RECORDS.labels("undecodable").inc()
        log.warning("tracker: skipping a record that is not a tracked message: %s", exc)
        return
    give_up, delay = time.monotonic() + FOLD_GIVE_UP_S, 1.0
    while True:
        try:
            await _handle(documents, message)
            return
        except Exception as exc:
            metrics.TRACKER_RECORDS.labels("error").inc()
            log.exception("tracker: could not handle a %s of %s", message.type,
                          document_key(message))  # fmt: skip
            if isinstance(exc, UnfoldableEvent) or time.monotonic() > give_up:
                with contextlib.suppress(Exception):
                    await _fail_document(documents, message, exc.__cause__ or exc)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)


async def _handle(documents: Documents, message: TrackedMessage) -> None:
    key = document_key(message)
    async with documents.lock:
        before = documents.get(key)
        try:
            folded = fold(before, message, utc_now())
        except Exception as exc:  # the fold is pure: trying again would fail again
            raise UnfoldableEvent(exc) from exc
        if documents.dropped(key, folded):
            return
        await documents.settle(key, before, folded, later=True)
    applied = folded.changed or folded.actions
    metrics.TRACKER_RECORDS.labels("applied" if applied else "unchanged").inc()


async def _fail_document(
    documents: Documents, message: TrackedMessage, error: BaseException
) -> None:
    """A record the tracker cannot handle: the document fails with a reason (and its caller is
    told) rather than waiting forever for a record the tracker has given up on."""
    key = document_key(message)
    async with documents.lock:
        before = documents.get(key)
        tenant, document = message.tenant_id, message.document_id
        state = before or DocumentState(tenant_id=tenant, document_id=document)
        if state.phase in TERMINAL:
            return
        reason = f"the tracker could not process a {message.type} event ({type(error).__name__})"
        give_up = Folded(state, changed=False, actions=[Fail(reason, "TrackerError")])
        await documents.settle(key, before, give_up)


async def deliver(documents: Documents, sender: CallbackSender, value: bytes) -> None:
    """POST one due callback (retried within the sender) and report how it ended."""
    try:
        due = CallbackDue.from_wire(value)
    except ValueError as exc:
        log.warning("tracker: skipping an invalid callback record: %s", exc)
        return
    delivery = await asyncio.get_running_loop().run_in_executor(None, sender.deliver, due)
    metrics.CALLBACKS.labels(delivery.outcome).inc()
    log.info("callback %s for %s/%s: %s", due.event, due.tenant_id, due.document_id,
             delivery.outcome)  # fmt: skip
    await documents.send(
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


def start_agents(app: faust.App, documents: Documents, settings: Settings, sources: Any) -> None:
    """The fold over ``sources`` (ingest and events) and the deliveries of docs.callbacks."""
    sender = CallbackSender(
        SigningKeys(settings.callback_secrets, settings.callback_secrets_file),
        AddressGuard(settings.callback_allowlist, settings.outbound_ports),
        timeout_s=settings.callback_timeout_s,
        give_up_s=settings.callback_give_up_s,
    )

    @app.agent(sources, name="fold_events")
    async def fold_events(stream: Any) -> None:
        if settings.tracker_fold_batch_wait_s <= 0:
            async for value in stream:
                await fold_record(documents, value)
                await documents.write_pending()
            return
        # faust acknowledges a taken batch's records after this body: their states are durable
        # by then. A large document's ~4 events per window each rewrote its whole state.
        async for values in stream.take(FOLD_BATCH, within=settings.tracker_fold_batch_wait_s):
            for value in values:
                await fold_record(documents, value)
            await documents.write_pending()

    @app.agent(documents.outputs["callbacks"], concurrency=CALLBACK_CONCURRENCY,
               name="deliver_callbacks")  # fmt: skip
    async def deliver_callbacks(stream: Any) -> None:
        async for value in stream:
            await deliver(documents, sender, value)
