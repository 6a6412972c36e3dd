"""Partitions that no member of a Stable group owns, found and handed out again.

Under the classic protocol with cooperative-sticky assignment a rebalance takes two rounds: the
first revokes partitions that move, the second assigns them. A static member replaced between
the two (killed while busy, restarted with the same ``group.instance.id``) rejoins a group that
the broker deems Stable: it is given the lost member's assignment from the first round and no
second round follows, so the revoked partitions stay unowned until the group changes again
(seen in the two-tracker size chaos run; docs/benchmarks.md, Chaos). Nothing on the client side
sees it: each member owns what it was given.

The guard asks the group coordinator every ``ORPHAN_CHECK_S`` which partitions the members own.
Unowned partitions of the input topic in a Stable group, the same ones at two checks in a row
(the gap between the two rounds is normally a poll's length), make this member rejoin with its
subscription written the other way (the topic's name <-> a regex matching only it): a changed
subscription is a new JoinGroup that the coordinator must answer with a rebalance, and that
rebalance assigns them. Re-subscribing unchanged is not enough: librdkafka sends nothing, and a
follower's unchanged JoinGroup would be answered with its current assignment.

KIP-848 (``CONSUMER_GROUP_PROTOCOL=consumer``) has no second round: the guard is off there.
"""

from __future__ import annotations

import logging
import re
import time
from concurrent.futures import Future
from typing import Any

from confluent_kafka import ConsumerGroupState, TopicCollection
from confluent_kafka.admin import AdminClient, ConsumerGroupDescription, TopicDescription

from streams import metrics
from streams.kafka_clients import admin_client
from streams.settings import Settings

log = logging.getLogger(__name__)


class OrphanedPartitionGuard:
    """Polled from the consumer's thread; never blocks it (the coordinator answers a future)."""

    def __init__(self, settings: Settings, stage: str, group_id: str, topic: str) -> None:
        self.stage, self.group_id, self.topic = stage, group_id, topic
        self.check_every_s = settings.orphan_check_s
        self.enabled = settings.consumer_group_protocol == "classic" and self.check_every_s > 0
        self._settings = settings
        self._admin: AdminClient | None = None
        self._pending: tuple[Future[Any], Future[Any]] | None = None
        self._next_check = time.monotonic() + self.check_every_s
        self._suspected: frozenset[int] = frozenset()
        self._as_pattern = False

    def subscription(self) -> list[str]:
        """The input topic, by name or by a regex that matches it alone (librdkafka: a leading
        ``^`` makes it a regex)."""
        return [f"^{re.escape(self.topic)}$" if self._as_pattern else self.topic]

    def should_rejoin(self) -> bool:
        """True once when this member should subscribe again, with ``subscription()``."""
        if not self.enabled:
            return False
        if self._pending is None:
            if time.monotonic() >= self._next_check:
                self._pending = self._ask()
            return False
        described, topics = self._pending
        if not (described.done() and topics.done()):
            return False
        self._pending = None
        self._next_check = time.monotonic() + self.check_every_s
        try:
            orphans = _unowned(described.result(), topics.result(), self.topic)
        except Exception as exc:  # the coordinator moving, a timeout: ask again next time
            log.info("%s: could not describe group %s: %s", self.stage, self.group_id, exc)
            return False
        suspected, self._suspected = self._suspected, orphans
        if not orphans or orphans != suspected:
            return False
        log.warning("%s: partitions %s of %s owned by no member of the stable group %s; rejoining",
                    self.stage, sorted(orphans), self.topic, self.group_id)  # fmt: skip
        metrics.ORPHAN_REJOINS.labels(self.stage).inc()
        self._suspected = frozenset()
        self._as_pattern = not self._as_pattern
        return True

    def _ask(self) -> tuple[Future[Any], Future[Any]]:
        if self._admin is None:
            self._admin = admin_client(self._settings)
        group = self._admin.describe_consumer_groups([self.group_id], request_timeout=10)
        topic = self._admin.describe_topics(TopicCollection([self.topic]), request_timeout=10)
        return group[self.group_id], topic[self.topic]


def _unowned(group: ConsumerGroupDescription, topic: TopicDescription, name: str) -> frozenset[int]:
    """The topic's partitions that no member owns, if the group is Stable (otherwise a
    rebalance is under way and will hand them out)."""
    if group.state != ConsumerGroupState.STABLE or not group.members:
        return frozenset()
    owned = {
        tp.partition
        for member in group.members
        if member.assignment is not None
        for tp in member.assignment.topic_partitions
        if tp.topic == name
    }
    return frozenset({p.id for p in topic.partitions} - owned)
