"""The stage's Kafka clients: a read_committed consumer and a transactional producer."""

from __future__ import annotations

from typing import Any

from streams.kafka_clients import base_config, producer_config
from streams.pipeline import TOPICS
from streams.settings import Settings


def max_poll_interval_s(settings: Settings) -> float:
    """The longest a batch's work may take before the group drops this member. One record may
    take long (a large window's embeddings on a slow CPU); batches are cut at
    batch_max_seconds, so only a single record could come near this."""
    return max(600.0, settings.batch_max_seconds * 10)


def consumer_config(settings: Settings, group_id: str) -> dict[str, Any]:
    config = {
        **base_config(settings),
        "group.id": group_id,
        "enable.auto.commit": False,  # offsets commit in the batch's transaction only
        "enable.auto.offset.store": False,
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
        # Bounded prefetch keeps memory flat whatever the lag.
        "queued.max.messages.kbytes": settings.consumer_queue_kbytes,
        # ... and so does one fetch (default 50 MB). A larger record still comes through: the
        # broker returns the first record batch whatever its size (KIP-74).
        "fetch.max.bytes": settings.consumer_queue_kbytes * 1024,
        "queued.min.messages": settings.batch_max_messages,
        "max.poll.interval.ms": int(max_poll_interval_s(settings) * 1000),
    }
    if settings.consumer_group_protocol == "consumer":
        # KIP-848: the broker assigns and reconciles, so no partition is left unowned when a
        # static member is replaced mid-rebalance (under classic, the runner's
        # OrphanedPartitionGuard must find and hand them out); but a SIGKILLed static member's
        # id is refused to its replacement until the session expires.
        config["group.protocol"] = "consumer"
    else:
        config["partition.assignment.strategy"] = "cooperative-sticky"
    if settings.instance_id and settings.static_membership:
        config["group.instance.id"] = settings.instance_id
    return config


def transactional_producer_config(settings: Settings, transactional_id: str) -> dict[str, Any]:
    return {
        **producer_config(settings),
        "transactional.id": transactional_id,
        "transaction.timeout.ms": int(settings.transaction_timeout_s * 1000),
        "message.max.bytes": max(t.max_message_bytes for t in TOPICS),
        "compression.type": "zstd",  # text compresses well; the broker stores it as is
        "linger.ms": 5,
    }
