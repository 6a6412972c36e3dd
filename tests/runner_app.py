"""A stage app for runner tests, run in a child process so tests can SIGKILL it.

Its stage turns each PageBatch into a ChunkBatch with one chunk per page. With
RUNNER_APP_BLOCK_ON=<document_id>, the batch holding that document blocks after its outputs
reached the broker and before its commit (after touching RUNNER_APP_BLOCKED_FILE), so the test
can kill it in the middle of an open transaction.
"""

from __future__ import annotations

import dataclasses
import os
import time
import uuid
from pathlib import Path

from streams.messages import Chunk, ChunkBatch, PageBatch
from streams.pipeline import STAGE_SPECS, Stage
from streams.runner import Runner, _Batch
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


class BlockingRunner(Runner[PageBatch]):
    def _commit(self, batch: _Batch) -> bool:
        blocked_on = os.environ.get("RUNNER_APP_BLOCK_ON")
        if any(PageBatch.from_wire(r.value()).document_id == blocked_on for r in batch.records):
            self.producer.flush(30)  # the outputs are in the log, not yet committed
            Path(os.environ["RUNNER_APP_BLOCKED_FILE"]).touch()
            time.sleep(600)
        return super()._commit(batch)


if __name__ == "__main__":
    runner = BlockingRunner(STAGE, Settings())
    runner.install_signal_handlers()
    runner.run()
