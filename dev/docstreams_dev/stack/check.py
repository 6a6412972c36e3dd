"""`docstreams stack check`: prove the running stack does what docstreams relies on.

Kafka: transactions work and read_committed consumers see committed records only.
Weaviate: a collection with self-provided vectors accepts objects and answers a vector query.
Everything it creates is scratch and removed afterwards.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic
from weaviate.classes.config import Configure, DataType, Property
from weaviate.classes.data import DataObject

from docstreams_dev.errors import StackError
from streams.kafka_clients import admin_client, base_config
from streams.settings import Settings
from streams.weaviate_clients import connect_weaviate

_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class CheckResult:
    service: str
    ok: bool
    seconds: float
    detail: str


def check_kafka_transactions(settings: Settings) -> CheckResult:
    began = time.monotonic()
    run = uuid.uuid4().hex[:12]
    topic = f"{settings.topic_prefix}stack-check-{run}"
    admin = admin_client(settings)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=-1)])[topic].result(
        timeout=_TIMEOUT_S
    )
    try:
        producer = Producer(
            {**base_config(settings), "transactional.id": f"docstreams-stack-check-{run}"}
        )
        producer.init_transactions(_TIMEOUT_S)
        for value, commit in ((b"committed-1", True), (b"aborted", False), (b"committed-2", True)):
            producer.begin_transaction()
            producer.produce(topic, value=value)
            if commit:
                producer.commit_transaction(_TIMEOUT_S)
            else:
                producer.flush(_TIMEOUT_S)  # the record really reaches the log before the abort
                producer.abort_transaction(_TIMEOUT_S)
        seen = _read_committed(settings, topic, until=b"committed-2")
    finally:
        admin.delete_topics([topic])[topic].result(timeout=_TIMEOUT_S)
    ok = seen == [b"committed-1", b"committed-2"]
    detail = "read_committed saw " + ", ".join(v.decode() for v in seen)
    return CheckResult("kafka", ok, time.monotonic() - began, detail)


def _read_committed(settings: Settings, topic: str, *, until: bytes) -> list[bytes]:
    consumer = Consumer(
        {
            **base_config(settings),
            "group.id": f"docstreams-stack-check-{uuid.uuid4().hex[:8]}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    seen: list[bytes] = []
    deadline = time.monotonic() + _TIMEOUT_S
    try:
        while time.monotonic() < deadline and until not in seen:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None and (value := msg.value()) is not None:
                seen.append(value)
    finally:
        consumer.close()
    return seen


def check_weaviate_vectors(settings: Settings) -> CheckResult:
    began = time.monotonic()
    name = f"DocstreamsStackCheck{uuid.uuid4().hex[:12]}"
    vectors = {"north": [1.0, 0.0, 0.0], "east": [0.0, 1.0, 0.0], "up": [0.0, 0.0, 1.0]}
    with connect_weaviate(settings) as client:
        collection = client.collections.create(
            name,
            vector_config=Configure.Vectors.self_provided(),
            properties=[Property(name="text", data_type=DataType.TEXT)],
        )
        try:
            result = collection.data.insert_many(
                [DataObject(properties={"text": t}, vector=v) for t, v in vectors.items()]
            )
            if result.has_errors:
                raise StackError(f"Weaviate rejected objects: {result.errors}")
            hits = collection.query.near_vector([0.1, 0.9, 0.0], limit=1).objects
            found = str(hits[0].properties["text"]) if hits else ""
            count = collection.aggregate.over_all(total_count=True).total_count
        finally:
            client.collections.delete(name)
    ok = found == "east" and count == len(vectors)
    detail = f"{count} objects, nearest to (0.1, 0.9, 0) is {found!r}"
    return CheckResult("weaviate", ok, time.monotonic() - began, detail)
