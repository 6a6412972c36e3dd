"""Document states of earlier releases (JSON-encoded keys on the wrong partitions) are imported
once into the tracker's current changelog on a real broker, before the tracker recovers it."""

from __future__ import annotations

import dataclasses

import orjson
import pytest
from confluent_kafka import Producer

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
from streams.tracker.legacy import import_legacy_states


def _write(settings: Settings, topic: str, key: bytes, value: bytes | None) -> None:
    producer = Producer(producer_config(settings))
    producer.produce(topic_name(settings, topic), key=key, value=value,
                     partition=partition_of(key, DOCUMENT_PARTITIONS))  # fmt: skip
    assert producer.flush(30) == 0


def _legacy(settings: Settings, key: str, value: bytes | None) -> None:
    """As faust wrote it: the key JSON-encoded, on the partition of that encoding."""
    _write(settings, LEGACY_TRACKER_CHANGELOG, orjson.dumps(key), value)


@pytest.mark.stack
def test_earlier_states_move_to_their_documents_partitions_once_and_newer_ones_are_kept(
    topics: Settings,
) -> None:
    settings = topics
    legacy_spec = dataclasses.replace(TOPIC_SPECS[TRACKER_CHANGELOG], key=LEGACY_TRACKER_CHANGELOG)
    create_topics(admin_client(settings), settings, (legacy_spec,))
    _legacy(settings, "acme/a", b"a-1")
    _legacy(settings, "acme/a", b"a-2")  # the latest state wins
    _legacy(settings, "acme/b", b"b-1")
    _legacy(settings, "acme/b", None)  # forgotten (deleted and past retention)
    _legacy(settings, "acme/c", b"c-old")
    _write(settings, TRACKER_CHANGELOG, b"acme/c", b"c-new")  # already in the current table
    moved = [p for p in ("acme/a", "acme/c")
             if partition_of(orjson.dumps(p), DOCUMENT_PARTITIONS)
             != partition_of(p.encode(), DOCUMENT_PARTITIONS)]  # fmt: skip
    assert moved, "the keys chosen must show the move"

    assert import_legacy_states(settings) == 1

    current = read_all(settings, topic_name(settings, TRACKER_CHANGELOG), tombstones=True)
    found = sorted(((r.key() or b"").decode(), r.value(), r.partition()) for r in current)
    assert found == sorted([
        ("acme/a", b"a-2", partition_of(b"acme/a", DOCUMENT_PARTITIONS)),
        ("acme/c", b"c-new", partition_of(b"acme/c", DOCUMENT_PARTITIONS)),
    ])  # fmt: skip
    legacy = topic_name(settings, LEGACY_TRACKER_CHANGELOG)
    assert legacy not in admin_client(settings).list_topics(timeout=10).topics
    assert import_legacy_states(settings) == 0  # nothing left to import
