"""Kafka client configuration shared by every docstreams process."""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka.admin import AdminClient

from streams.settings import Settings


def base_config(settings: Settings) -> dict[str, Any]:
    """Settings common to admin, producer and consumer clients."""
    return {
        "bootstrap.servers": settings.bootstrap_servers,
        # librdkafka logs through Python logging instead of writing to stderr.
        "logger": logging.getLogger("docstreams.kafka"),
    }


def producer_config(settings: Settings) -> dict[str, Any]:
    """Producer settings every docstreams producer shares.

    murmur2 is the Java client's partitioner, and aiokafka's (the tracker): a key lands on the
    same partition whoever produced it, so a document's events stay on one partition, in order,
    and co-partitioned with the tracker's table. (librdkafka's default, CRC32, would not.)"""
    return {**base_config(settings), "partitioner": "murmur2_random", "enable.idempotence": True}


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient(base_config(settings))
