"""`docstreams topics create` against the real broker: idempotent, and it repairs config drift."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType
from typer.testing import CliRunner

from streams.cli import app
from streams.kafka_clients import admin_client
from streams.pipeline import TOPICS
from streams.progress import follow
from streams.settings import Settings, as_environment
from streams.topics import TopicAction, create_topics, topic_name

pytestmark = pytest.mark.stack


def _topic_config(settings: Settings, name: str) -> dict[str, str]:
    resource = ConfigResource(ResourceType.TOPIC, name)
    admin = admin_client(settings)  # must outlive the future, or librdkafka cancels it
    entries = admin.describe_configs([resource])[resource].result(timeout=15)
    return {k: e.value for k, e in entries.items()}


def test_create_twice_creates_every_declared_topic_once_then_changes_nothing(
    settings: Settings,
) -> None:
    admin = admin_client(settings)
    first = create_topics(admin, settings)
    second = create_topics(admin, settings)

    assert [r.action for r in first] == [TopicAction.CREATED] * len(TOPICS)
    assert [r.action for r in second] == [TopicAction.UNCHANGED] * len(TOPICS)
    metadata = admin.list_topics(timeout=10).topics
    for spec in TOPICS:
        name = topic_name(settings, spec.key)
        assert len(metadata[name].partitions) == spec.partitions
        config = _topic_config(settings, name)
        assert config["max.message.bytes"] == str(spec.max_message_bytes)
        assert config["retention.ms"] == str(spec.retention_ms)
        assert config["cleanup.policy"] == spec.cleanup_policy


def test_create_restores_a_config_changed_by_hand(settings: Settings) -> None:
    admin = admin_client(settings)
    create_topics(admin, settings)
    pages = topic_name(settings, "pages")
    drifted = ConfigResource(
        ResourceType.TOPIC,
        pages,
        incremental_configs=[
            ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    admin.incremental_alter_configs([drifted])[drifted].result(timeout=15)
    # The controller applies the change; the broker's view follows a moment later.
    deadline = time.monotonic() + 30
    while _topic_config(settings, pages)["retention.ms"] != "1000":
        assert time.monotonic() < deadline, "the manual config change never became visible"
        time.sleep(0.2)

    results = {r.name: r for r in create_topics(admin, settings)}

    assert results[pages].action is TopicAction.RECONFIGURED
    assert "retention.ms=" in results[pages].note
    spec = next(t for t in TOPICS if t.key == "pages")
    assert _topic_config(settings, pages)["retention.ms"] == str(spec.retention_ms)


def test_topics_create_command_twice_exits_zero_and_lists_every_topic(settings: Settings) -> None:
    env = as_environment(settings)
    outputs = [CliRunner().invoke(app, ["topics", "create"], env=env) for _ in range(2)]
    assert [o.exit_code for o in outputs] == [0, 0], [(o.output, o.exception) for o in outputs]
    for spec in TOPICS:
        assert topic_name(settings, spec.key) in outputs[1].output
    assert "created" in outputs[0].output and "unchanged" in outputs[1].output


def test_following_a_document_right_after_its_topics_were_made_waits_for_their_leaders(
    settings: Settings,
) -> None:
    # Without the wait, about half of these tries failed at once with NOT_LEADER_FOR_PARTITION.
    for attempt in range(4):
        fresh = settings.model_copy(
            update={"topic_prefix": f"{settings.topic_prefix}new{attempt}."}
        )
        create_topics(admin_client(fresh), fresh)
        progress = follow(fresh, "acme", "not-submitted", datetime.now(UTC), timeout_s=0.5)
        assert progress.completed is None and progress.failure is None
