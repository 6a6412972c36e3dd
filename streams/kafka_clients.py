"""Kafka client configuration shared by every docstreams process."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from streams.settings import KafkaSettings


def base_config(settings: KafkaSettings) -> dict[str, Any]:
    """Settings common to admin, producer and consumer clients."""
    config: dict[str, Any] = {
        **settings.kafka_extra_config,
        "bootstrap.servers": settings.bootstrap_servers,
        # librdkafka logs through Python logging instead of writing to stderr.
        "logger": logging.getLogger("docstreams.kafka"),
        "security.protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol.startswith("SASL"):
        password = settings.kafka_sasl_password
        config |= {
            "sasl.mechanism": settings.kafka_sasl_mechanism,
            "sasl.username": settings.kafka_sasl_username or "",
            "sasl.password": password.get_secret_value() if password else "",
        }
    if settings.kafka_ssl_ca_location and settings.kafka_security_protocol.endswith("SSL"):
        config["ssl.ca.location"] = str(settings.kafka_ssl_ca_location)
    return config


def producer_config(settings: KafkaSettings) -> dict[str, Any]:
    """Producer settings every docstreams producer shares.

    murmur2 is the Java client's partitioner, and aiokafka's (the tracker): a key lands on the
    same partition whoever produced it, so a document's events stay on one partition, in order,
    and co-partitioned with the tracker's table. (librdkafka's default, CRC32, would not.)"""
    return {**base_config(settings), "partitioner": "murmur2_random", "enable.idempotence": True}


def admin_client(settings: KafkaSettings) -> AdminClient:
    return AdminClient(base_config(settings))


def read_all(
    settings: KafkaSettings,
    topic: str,
    isolation: str = "read_committed",
    timeout_s: float = 120.0,
    tombstones: bool = False,
) -> list[Message]:
    """Every record of a topic right now, all partitions, without joining a group's offsets
    (for checks, audits, tests and one-time imports; not for processing). Records without a value
    (a compacted topic's deletions) only with ``tombstones``."""
    consumer = Consumer({**base_config(settings), "group.id": f"read-{uuid.uuid4().hex[:8]}",
                         "isolation.level": isolation, "enable.auto.commit": False,
                         "enable.partition.eof": True})  # fmt: skip
    partitions = admin_client(settings).list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    records: list[Message] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while len(at_end) < len(partitions) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error() is not None:
                at_end.add(msg.partition() or 0)
            elif tombstones or msg.value() is not None:
                records.append(msg)
    finally:
        consumer.close()
    return records
