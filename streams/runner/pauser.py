"""Back-pressure: a stage whose downstream is unavailable stops fetching for a while."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from confluent_kafka import Consumer, TopicPartition

from streams import metrics
from streams.health import Health

log = logging.getLogger(__name__)


class PartitionPauser:
    """Pauses every assigned partition until a deadline (or POST /resume), including partitions
    assigned while paused."""

    def __init__(self, stage: str, health: Health) -> None:
        self.stage = stage
        self.health = health
        self.until = 0.0  # 0: not paused

    def pause(self, consumer: Consumer, seconds: float, reason: str) -> None:
        assignment = consumer.assignment()
        if assignment:
            consumer.pause(assignment)
        self.until = time.monotonic() + seconds
        self.health.paused_because = reason
        metrics.PAUSED.labels(self.stage).set(1)

    def resume_if_due(self, consumer: Consumer) -> None:
        if self.health.resume_requested.is_set():  # POST /resume: an operator fixed the cause
            self.health.resume_requested.clear()
            if self.until:
                log.info("%s: resuming on request", self.stage)
                self.until = time.monotonic()
        if self.until and time.monotonic() >= self.until:
            consumer.resume(consumer.assignment())
            self.until = 0.0
            self.health.paused_because = None
            metrics.PAUSED.labels(self.stage).set(0)

    def on_assign(self, consumer: Consumer, partitions: Sequence[TopicPartition]) -> None:
        if self.until:
            consumer.pause(list(partitions))
