"""Re-reading one document's records from the log (the tracker's stalled-document re-check),
on the real broker: the partition it computes is the one librdkafka's producers chose."""

from __future__ import annotations

from datetime import timedelta

import pytest
from confluent_kafka import Producer

from streams.kafka_clients import producer_config
from streams.messages import utc_now
from streams.replay import records_of
from streams.settings import Settings
from streams.topics import topic_name


@pytest.mark.stack
def test_a_documents_records_are_read_back_in_order_and_only_its_own(topics: Settings) -> None:
    topic = topic_name(topics, "events")
    since = utc_now()
    producer = Producer(producer_config(topics))
    keys = [f"acme/doc-{n}".encode() for n in range(24)]  # spread over every partition
    for round_ in range(3):
        for key in keys:
            producer.produce(topic, key=key, value=b"%s #%d" % (key, round_))
    assert producer.flush(30) == 0
    for key in keys:
        assert records_of(topics, topic, key, since) == [b"%s #%d" % (key, r) for r in range(3)]


@pytest.mark.stack
def test_records_written_before_the_submission_are_not_read(topics: Settings) -> None:
    topic = topic_name(topics, "events")
    producer = Producer(producer_config(topics))
    producer.produce(topic, key=b"acme/old", value=b"earlier")
    assert producer.flush(30) == 0
    assert records_of(topics, topic, b"acme/old", utc_now() + timedelta(hours=1)) == []
