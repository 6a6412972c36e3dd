"""Re-reading one document's records from the log (the tracker's stalled-document re-check).

The tracker folds each record once as faust delivers it. Should a delivery ever be lost (a
crash between faust's offset commit and the fold, an error while folding), the records are
still in the ingest and events topics: every record of a document is keyed by it, so they sit
in one partition of each, in order. Reading that partition from the submission on and folding
again restores what the live fold missed; the fold is idempotent, so what it already saw
changes nothing.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime

from aiokafka.partitioner import murmur2  # type: ignore[import-untyped]  # Java client hash
from confluent_kafka import Consumer, KafkaError, TopicPartition

from streams.kafka_clients import admin_client, base_config
from streams.settings import KafkaSettings

# Broker timestamps and the producers' clocks may differ slightly: start a little early.
_LOOKBACK_S = 60.0


def partition_of(key: bytes, partitions: int) -> int:
    """The partition librdkafka's murmur2 partitioner (and Kafka's Java client) gives a key."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def records_of(
    settings: KafkaSettings, topic: str, key: bytes, since: datetime, timeout_s: float = 60.0
) -> list[bytes]:
    """The committed records of ``topic`` with ``key`` written at or after ``since``, in order
    (blocking: run it in a thread)."""
    metadata = admin_client(settings).list_topics(topic, timeout=10).topics[topic]
    partition = partition_of(key, len(metadata.partitions))
    consumer = Consumer({**base_config(settings), "group.id": f"replay-{uuid.uuid4().hex[:8]}",
                         "isolation.level": "read_committed", "enable.auto.commit": False,
                         "enable.partition.eof": True})  # fmt: skip
    try:
        start_ms = int((since.timestamp() - _LOOKBACK_S) * 1000)
        (start,) = consumer.offsets_for_times([TopicPartition(topic, partition, start_ms)], 10)
        if start.offset < 0:  # nothing written since then
            return []
        consumer.assign([TopicPartition(topic, partition, start.offset)])
        values: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    return values
                continue
            if msg.key() == key and msg.value() is not None:
                values.append(msg.value() or b"")
        raise TimeoutError(f"reading {topic}[{partition}] took over {timeout_s:.0f}s")
    finally:
        consumer.close()
