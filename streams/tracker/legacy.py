"""Document states written by earlier releases, imported once into the current table.

Those releases let faust encode the table's keys as JSON (``"tenant/doc"``, quotes included) and
the producer partitioned them by the hash of that encoding, so a state sat on another partition
than its document's records: a tracker replica that took over some partitions did not recover
the states of its documents (they stayed unknown and never completed). At start, before faust
runs, the old changelog is read, each state the current table has no record of is written there
under its plain key on its document's partition, and the old topic is deleted. Repeating it is
safe: a key the current table already holds (or has deleted) is left as it is.
"""

from __future__ import annotations

import logging

import orjson
from confluent_kafka import KafkaException, Producer

from streams.kafka_clients import admin_client, producer_config, read_all
from streams.pipeline import (
    DOCUMENT_PARTITIONS,
    LEGACY_TRACKER_CHANGELOG,
    TOPIC_SPECS,
    TRACKER_CHANGELOG,
)
from streams.replay import partition_of
from streams.settings import Settings
from streams.topics import create_topics, topic_name

log = logging.getLogger(__name__)


def import_legacy_states(settings: Settings) -> int:
    """Copy the old changelog's live states into the current one, then delete it; how many were
    copied (0 when there is no old changelog)."""
    admin = admin_client(settings)
    legacy = topic_name(settings, LEGACY_TRACKER_CHANGELOG)
    current = topic_name(settings, TRACKER_CHANGELOG)
    topics = admin.list_topics(timeout=10).topics
    if legacy not in topics:
        return 0
    if current not in topics:
        create_topics(admin, settings, (TOPIC_SPECS[TRACKER_CHANGELOG],))
    states: dict[str, bytes | None] = {}
    for record in read_all(settings, legacy, tombstones=True):  # in order within a partition
        states[orjson.loads(record.key() or b"null")] = record.value()
    known = {(r.key() or b"").decode() for r in read_all(settings, current, tombstones=True)}
    missing = {k: v for k, v in states.items() if v is not None and k not in known}
    producer = Producer(producer_config(settings))
    failures: list[str] = []

    def delivered(error: object, _message: object) -> None:
        if error is not None:
            failures.append(str(error))

    for key, value in missing.items():
        producer.produce(current, key=key.encode(), value=value, on_delivery=delivered,
                         partition=partition_of(key.encode(), DOCUMENT_PARTITIONS))  # fmt: skip
        producer.poll(0)
    if producer.flush(60) or failures:
        raise KafkaException(f"importing the tracker's earlier states: {failures or 'timed out'}")
    admin.delete_topics([legacy], operation_timeout=30)[legacy].result()
    log.info("tracker: imported %d document states from %s and deleted it", len(missing), legacy)
    return len(missing)
