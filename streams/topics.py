"""`topics create`: applies the topics declared in streams/pipeline.py, idempotently."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)
from tenacity import retry, retry_if_exception, stop_after_delay, wait_fixed

from streams.errors import DocstreamsError
from streams.pipeline import TOPICS, TopicSpec
from streams.settings import KafkaSettings, Settings


def topic_name(settings: KafkaSettings, key: str) -> str:
    return f"{settings.topic_prefix}{key}"


class TopicAction(StrEnum):
    CREATED = "created"
    UNCHANGED = "unchanged"
    RECONFIGURED = "reconfigured"


@dataclass(frozen=True)
class TopicResult:
    name: str
    action: TopicAction
    partitions: int
    note: str = ""


def create_topics(
    admin: AdminClient, settings: Settings, specs: tuple[TopicSpec, ...] = TOPICS
) -> list[TopicResult]:
    """Create missing topics and bring drifted configs back to the declaration.

    Partition counts are never changed on an existing topic: adding partitions moves keys to
    other partitions and would break per-document ordering mid-flight, so a difference is
    reported for an operator to decide.
    """
    existing = admin.list_topics(timeout=15).topics
    by_name = {topic_name(settings, s.key): s for s in specs}
    missing = [n for n in by_name if n not in existing]
    results: dict[str, TopicResult] = {}
    if missing:
        futures = admin.create_topics(
            [
                # replication_factor -1: the cluster's default.replication.factor
                NewTopic(
                    n,
                    num_partitions=by_name[n].partitions,
                    replication_factor=-1,
                    config=by_name[n].config(),
                )
                for n in missing
            ],
            operation_timeout=30,
        )
        for name, future in futures.items():
            try:
                future.result()
                results[name] = TopicResult(name, TopicAction.CREATED, by_name[name].partitions)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise DocstreamsError(f"creating topic {name} failed: {exc}") from exc
                # Created concurrently by another `topics create`: verify it like an old one.
    for name, spec in by_name.items():
        if name not in results:
            results[name] = _reconcile(admin, name, spec)
        else:
            _describe(admin, name)  # returns once the broker serves the new topic
    return [results[n] for n in by_name]


def _is_unknown_topic(exc: BaseException) -> bool:
    return isinstance(exc, KafkaException) and exc.args[0].code() in (
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_TOPIC,
    )


# A topic the controller has just created reaches the broker's metadata a moment later.
@retry(
    retry=retry_if_exception(_is_unknown_topic),
    stop=stop_after_delay(30),
    wait=wait_fixed(0.2),
    reraise=True,
)
def _describe(admin: AdminClient, name: str) -> dict[str, ConfigEntry]:
    resource = ConfigResource(ResourceType.TOPIC, name)
    entries: dict[str, ConfigEntry] = admin.describe_configs([resource])[resource].result(
        timeout=15
    )
    return entries


def _reconcile(admin: AdminClient, name: str, spec: TopicSpec) -> TopicResult:
    current = _describe(admin, name)
    drift = {k: v for k, v in spec.config().items() if current[k].value != v}
    metadata = admin.list_topics(topic=name, timeout=15).topics[name]
    partitions = len(metadata.partitions)
    note = ""
    if partitions != spec.partitions:
        note = f"has {partitions} partitions, declared {spec.partitions} (left as is)"
    if not drift:
        return TopicResult(name, TopicAction.UNCHANGED, partitions, note)
    resource = ConfigResource(
        ResourceType.TOPIC,
        name,
        incremental_configs=[
            ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in drift.items()
        ],
    )
    admin.incremental_alter_configs([resource])[resource].result(timeout=15)
    changed = ", ".join(f"{k}={v}" for k, v in drift.items())
    note = "; ".join(filter(None, [changed, note]))
    return TopicResult(name, TopicAction.RECONFIGURED, partitions, note)
