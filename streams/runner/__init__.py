"""The runner: the only code in docstreams that touches Kafka offsets.

A stage is a plain function ``handle(message) -> messages`` (streams/pipeline.py). The runner
feeds it records in bounded batches and makes each batch one Kafka transaction: every output,
every dead letter and the input offsets commit together or not at all (KIP-447: one
transactional producer per process, fenced through the consumer group metadata). A crash
therefore redoes at most the batch in flight, and read_committed consumers downstream never see
its half-written outputs.

    loop.py           the loop: take a batch, handle each record, commit (Runner)
    classify.py       what to do about an error: retry, dead-letter, pause (pure)
    transaction.py    begin, produce, send offsets, commit; abort
    batch.py          the input batch (offsets, rewind) and its encoded outputs
    dead_letters.py   the dead letter and DocumentFailed for an input that cannot be processed
    pauser.py         back-pressure: pause the partitions while downstream is unavailable
    orphans.py        partitions no member owns (classic protocol): rejoin to hand them out
    watchdog.py       exit when the loop stops turning
    clients.py        the consumer's and producer's configuration
"""

from streams.runner.loop import Runner
from streams.runner.transaction import BATCH_HEADER

__all__ = ["BATCH_HEADER", "Runner"]
