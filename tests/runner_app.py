"""A stage app for runner tests, run in a child process so tests can SIGKILL it.

Its stage turns each PageBatch into a ChunkBatch with one chunk per page. With
RUNNER_APP_BLOCK_ON=<document_id>, the transaction holding that document's outputs blocks after
they reached the broker and before its commit (after touching RUNNER_APP_BLOCKED_FILE), so the
test can kill it in the middle of an open transaction.
"""

from __future__ import annotations

import dataclasses
import os
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Producer

from streams.messages import Chunk, ChunkBatch, PageBatch
from streams.pipeline import STAGE_SPECS, Stage
from streams.runner import Runner
from streams.settings import Settings


def one_chunk_per_page(batch: PageBatch) -> list[ChunkBatch]:
    chunks = [
        Chunk(
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{batch.document_id}/{page.number}")),
            index=i,
            text=page.text,
            page_start=page.number,
            page_end=page.number,
            tokens=1,
        )
        for i, page in enumerate(batch.pages)
    ]
    return [ChunkBatch(**batch.carried(), chunks=chunks)]


STAGE = Stage(dataclasses.replace(STAGE_SPECS["chunk"], name="test-chunk"), one_chunk_per_page)


class ProducerBlockingBeforeCommit(Producer):
    """The runner's producer, but a transaction holding an output of RUNNER_APP_BLOCK_ON blocks
    once its outputs reached the broker, before its commit (the runner's producer seam)."""

    blocked_on = os.environ.get("RUNNER_APP_BLOCK_ON")
    holds_blocked_document = False

    def begin_transaction(self, *args: Any) -> None:
        self.holds_blocked_document = False
        super().begin_transaction(*args)

    def produce(self, *args: Any, **kwargs: Any) -> None:
        value = kwargs.get("value") or b"{}"
        if orjson.loads(value).get("document_id") == self.blocked_on:
            self.holds_blocked_document = True
        super().produce(*args, **kwargs)

    def commit_transaction(self, *args: Any) -> None:
        if self.holds_blocked_document:
            self.flush(30)  # the outputs are in the log, not yet committed
            Path(os.environ["RUNNER_APP_BLOCKED_FILE"]).touch()
            time.sleep(600)
        super().commit_transaction(*args)


if __name__ == "__main__":
    runner = Runner(STAGE, Settings(), producer_factory=ProducerBlockingBeforeCommit)
    runner.install_signal_handlers()
    runner.run()
