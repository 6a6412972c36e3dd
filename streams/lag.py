"""Consumer lag of every stage: committed offset vs the end of its input topic, per partition.

Transaction markers occupy offsets too: after a stage commits its last batch, the end offset
sits one marker past its committed offset. Where the raw difference is that small, a
read_committed probe checks whether any record is really left, so a finished stage shows 0.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from confluent_kafka import Consumer as KafkaConsumer
from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from tenacity import retry, retry_if_exception, stop_after_delay, wait_fixed

from streams.kafka_clients import admin_client, base_config
from streams.pipeline import STAGE_SPECS
from streams.settings import KafkaSettings
from streams.topics import topic_name

# Raw lag at or below this is probed for markers-only (each batch adds one marker).
_MARKER_PROBE_MAX = 3
_TIMEOUT_S = 15


@dataclass(frozen=True)
class PartitionLag:
    stage: str
    group: str
    topic: str
    partition: int
    committed: int | None  # None: the group never committed on this partition
    end: int
    lag: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def stage_lags(settings: KafkaSettings, stages: Iterable[str] = STAGE_SPECS) -> list[PartitionLag]:
    admin = admin_client(settings)
    result = []
    for stage in stages:
        topic = topic_name(settings, STAGE_SPECS[stage].input_topic)
        group = f"{settings.topic_prefix}{stage}"
        result += _group_lags(admin, settings, stage, group, topic)
    return result


_TRANSIENT_CODES = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError._TIMED_OUT,
    KafkaError._UNKNOWN_TOPIC,
}


def _transient(exc: BaseException) -> bool:
    """Leader elections and fresh topics answer with these for a moment; asking again works."""
    if not isinstance(exc, KafkaException):
        return False
    error: KafkaError = exc.args[0]
    return error.retriable() or error.code() in _TRANSIENT_CODES


@retry(retry=retry_if_exception(_transient), stop=stop_after_delay(30), wait=wait_fixed(0.5),
       reraise=True)  # fmt: skip
def _group_lags(
    admin: AdminClient, settings: KafkaSettings, stage: str, group: str, topic: str
) -> list[PartitionLag]:
    metadata = admin.list_topics(topic, timeout=_TIMEOUT_S).topics[topic]
    if metadata.error is not None:
        return []
    partitions = [TopicPartition(topic, p) for p in sorted(metadata.partitions)]
    request = [ConsumerGroupTopicPartitions(group, partitions)]
    committed_info = admin.list_consumer_group_offsets(request)[group].result(_TIMEOUT_S)
    committed = {tp.partition: tp.offset for tp in committed_info.topic_partitions}
    ends = _offsets(admin, partitions, OffsetSpec.latest())  # type: ignore[no-untyped-call]
    starts = _offsets(admin, partitions, OffsetSpec.earliest())  # type: ignore[no-untyped-call]
    lags = []
    for tp in partitions:
        done = committed.get(tp.partition, -1)
        has_commit = done >= 0
        lag = ends[tp.partition] - (done if has_commit else starts[tp.partition])
        if 0 < lag <= _MARKER_PROBE_MAX and not _records_after(
            settings, topic, tp.partition, done if has_commit else 0
        ):
            lag = 0
        lags.append(
            PartitionLag(
                stage,
                group,
                topic,
                tp.partition,
                done if has_commit else None,
                ends[tp.partition],
                max(lag, 0),
            )
        )
    return lags


def _offsets(admin: AdminClient, partitions: list[TopicPartition], spec: Any) -> dict[int, int]:
    futures = admin.list_offsets(
        {tp: spec for tp in partitions}, isolation_level=IsolationLevel.READ_COMMITTED
    )
    return {tp.partition: int(f.result(_TIMEOUT_S).offset) for tp, f in futures.items()}


def _records_after(settings: KafkaSettings, topic: str, partition: int, offset: int) -> bool:
    """Whether a read_committed consumer finds any record at or after ``offset``."""
    consumer = KafkaConsumer(
        {
            **base_config(settings),
            "group.id": f"lag-{uuid.uuid4().hex[:8]}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        for _ in range(20):
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            error = msg.error()
            if error is None:
                return True
            if error.code() == KafkaError._PARTITION_EOF:
                return False
        return True  # could not tell: keep the raw (conservative) lag
    finally:
        consumer.close()


class LagCollector(Collector):
    """kafka_exporter-compatible series, computed at each scrape."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings

    def collect(self) -> Iterable[GaugeMetricFamily]:
        lag = GaugeMetricFamily(
            "kafka_consumergroup_lag",
            "Records the group has yet to commit.",
            labels=["consumergroup", "topic", "partition"],
        )
        current = GaugeMetricFamily(
            "kafka_consumergroup_current_offset",
            "The group's committed offset.",
            labels=["consumergroup", "topic", "partition"],
        )
        end = GaugeMetricFamily(
            "kafka_topic_partition_current_offset",
            "The partition's end offset.",
            labels=["topic", "partition"],
        )
        total = GaugeMetricFamily(
            "kafka_consumergroup_lag_sum",
            "Lag over all partitions.",
            labels=["consumergroup", "topic"],
        )
        sums: dict[tuple[str, str], int] = {}
        for row in stage_lags(self.settings):
            labels = [row.group, row.topic, str(row.partition)]
            lag.add_metric(labels, row.lag)
            current.add_metric(labels, -1 if row.committed is None else row.committed)
            end.add_metric([row.topic, str(row.partition)], row.end)
            sums[(row.group, row.topic)] = sums.get((row.group, row.topic), 0) + row.lag
        for (group, topic), value in sums.items():
            total.add_metric([group, topic], value)
        yield from (lag, current, end, total)
