"""One batch: the input records taken together, and the outputs their handling made."""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka import Message as Record

from streams import metrics
from streams.errors import DocstreamsError, PoisonInput
from streams.messages import Message
from streams.pipeline import TOPICS
from streams.settings import Settings
from streams.topics import topic_name

# Room for the record envelope on top of a topic's max.message.bytes.
ENVELOPE_BYTES = 1024


@dataclass
class InputBatch:
    """Records taken together; their offsets commit with their outputs or not at all."""

    records: list[Record]

    @property
    def first_offsets(self) -> dict[tuple[str, int], int]:
        first: dict[tuple[str, int], int] = {}
        for record in self.records:
            first.setdefault((record.topic() or "", record.partition() or 0), record.offset() or 0)
        return first

    def next_offsets(self) -> list[TopicPartition]:
        """Where the group goes on from once this batch commits."""
        following = {(r.topic() or "", r.partition() or 0): (r.offset() or 0) + 1
                     for r in self.records}  # fmt: skip
        return [TopicPartition(t, p, o) for (t, p), o in following.items()]

    def rewind(self, consumer: Consumer) -> None:
        """Seek back to the batch's first records: they are consumed again."""
        for (topic, partition), offset in self.first_offsets.items():
            # Revoked meanwhile: its new owner starts from the committed offset anyway.
            with contextlib.suppress(KafkaException):
                consumer.seek(TopicPartition(topic, partition, offset))

    def split(self, done: int, consumer: Consumer) -> InputBatch:
        """Keep the first ``done`` records; the others are sought back to, for the next batch."""
        InputBatch(self.records[done:]).rewind(consumer)
        return InputBatch(self.records[:done])


@dataclass(frozen=True)
class Output:
    topic: str
    key: bytes
    value: bytes
    kind: str  # the message type, for the metrics


@dataclass
class Outputs:
    """A batch's outputs, encoded as they are made (a message's pages or vectors are not kept
    past their encoding), and the events among them, counted once the batch commits."""

    encoder: OutputEncoder
    records: list[Output] = field(default_factory=list)
    counted: list[Message] = field(default_factory=list)

    def add(self, messages: list[Message]) -> None:
        """All of one input's outputs, or none of them (PoisonInput if one cannot be produced)."""
        encoded = [self.encoder.encode(m) for m in messages]
        self.records += encoded
        self.counted += [m for m in messages if metrics.counted(m)]

    def per_topic(self) -> Counter[tuple[str, str]]:
        return Counter((o.topic, o.kind) for o in self.records)


class OutputEncoder:
    """Message -> record; refuses a message its topic could never take, and one for a topic the
    stage's declaration does not name (dead letters and failures aside)."""

    def __init__(self, settings: Settings, declared: tuple[str, ...]) -> None:
        self.settings = settings
        self.declared = {*declared, "dlq", "events"}
        self.limits = {
            topic_name(settings, t.key): t.max_message_bytes - ENVELOPE_BYTES for t in TOPICS
        }

    def encode(self, message: Message) -> Output:
        if message.topic_key not in self.declared:
            raise DocstreamsError(
                f"{type(message).__name__} goes to {message.topic_key}, which "
                "the stage's declaration (streams/pipeline.py) does not name"
            )
        topic = topic_name(self.settings, message.topic_key)
        value = message.to_wire()
        if len(value) > self.limits[topic]:
            # Producing it would fail the whole transaction on every replay: refuse the input.
            raise PoisonInput(
                f"output {type(message).__name__} is {len(value)} bytes, over {topic}'s limit"
            )
        return Output(topic, message.kafka_key(), value, type(message).__name__)
