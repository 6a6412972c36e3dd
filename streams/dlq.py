"""Dead letters: list them, and replay them to the topic they came from once the cause is fixed."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from streams.errors import DocstreamsError
from streams.kafka_clients import admin_client, base_config, producer_config
from streams.messages import DeadLetter, InvalidWireMessage
from streams.settings import KafkaSettings
from streams.topics import topic_name

_POLL_S = 0.5


@dataclass(frozen=True)
class Entry:
    id: str  # "<dlq partition>:<dlq offset>", stable for as long as the topic retains it
    letter: DeadLetter


def list_dead_letters(settings: KafkaSettings) -> list[Entry]:
    """Every dead letter the DLQ topic holds now, oldest first per partition."""
    topic = topic_name(settings, "dlq")
    partitions = admin_client(settings).list_topics(topic, timeout=10).topics[topic].partitions
    consumer = Consumer({**base_config(settings), "group.id": f"dlq-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "isolation.level": "read_committed"})  # fmt: skip
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    entries: list[Entry] = []
    at_end: set[int] = set()
    idle = 0
    try:
        while len(at_end) < len(partitions) and idle < 20:
            msg = consumer.poll(_POLL_S)
            if msg is None:
                idle += 1
                continue
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition() or 0)
                continue
            try:
                letter = DeadLetter.from_wire(msg.value())
            except InvalidWireMessage:
                continue  # not ours: the DLQ is append-only and shared by nobody else
            entries.append(Entry(f"{msg.partition()}:{msg.offset()}", letter))
    finally:
        consumer.close()
    return entries


def replay(settings: KafkaSettings, entries: Iterable[Entry]) -> int:
    """Re-publish each dead letter's original record to its source topic; returns the count."""
    producer = Producer(producer_config(settings))
    count = 0
    for entry in entries:
        letter = entry.letter
        if letter.original_value is None:
            raise DocstreamsError(f"dead letter {entry.id} has no original record to replay")
        key = base64.b64decode(letter.original_key) if letter.original_key else None
        producer.produce(letter.source_topic, key=key,
                         value=base64.b64decode(letter.original_value))  # fmt: skip
        count += 1
    if producer.flush(30):
        raise DocstreamsError("replayed records were not all acknowledged within 30 s")
    return count
