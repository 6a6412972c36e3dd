"""The faults of a chaos run: kills of random apps, broker restarts and a Weaviate outage, on a
schedule drawn from the plan's seed."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from docstreams_dev.chaos.plan import ChaosPlan
from docstreams_dev.stack import Stack
from streams.supervisor import Supervisor


@dataclass
class ChaosLog:
    kills: list[tuple[float, str]] = field(default_factory=list)
    broker_restarts: list[float] = field(default_factory=list)
    weaviate_outages: list[tuple[float, float]] = field(default_factory=list)


@contextmanager
def chaos(
    plan: ChaosPlan, apps: Supervisor, stack: Stack, rng: random.Random, finished: threading.Event
) -> Iterator[ChaosLog]:
    """Kills, a broker restart and a Weaviate outage, scheduled from the seed, in threads."""
    record = ChaosLog()
    began = time.monotonic()
    stop = threading.Event()
    kill_gaps = [rng.uniform(0.5, 4.0) for _ in range(plan.kills)]
    victims = [rng.choice(plan.victims) for _ in range(plan.kills)]
    downtimes = [rng.uniform(0.2, 3.0) for _ in range(plan.kills)]
    broker_at = sorted(rng.uniform(5.0, 40.0) for _ in range(plan.broker_restarts))
    weaviate_at = rng.uniform(5.0, 40.0)

    def killer() -> None:
        for gap, victim, downtime in zip(kill_gaps, victims, downtimes, strict=True):
            if stop.wait(gap) or finished.is_set():
                return
            apps.kill(victim)
            record.kills.append((round(time.monotonic() - began, 1), victim))
            time.sleep(downtime)
            apps.release(victim)

    def broker() -> None:
        for at in broker_at:
            if stop.wait(max(0.0, at - (time.monotonic() - began))) or finished.is_set():
                return
            record.broker_restarts.append(round(time.monotonic() - began, 1))
            stack.kafka.stop()
            stack.kafka.start()
            stack.kafka.wait_healthy(180)

    def weaviate() -> None:
        if plan.weaviate_outage_s <= 0:
            return
        if stop.wait(weaviate_at) or finished.is_set():
            return
        began_outage = round(time.monotonic() - began, 1)
        stack.weaviate.stop()
        stop.wait(plan.weaviate_outage_s)
        stack.weaviate.start()
        stack.weaviate.wait_healthy(180)
        record.weaviate_outages.append((began_outage, round(time.monotonic() - began, 1)))

    threads = [threading.Thread(target=t, daemon=True) for t in (killer, broker, weaviate)]
    for thread in threads:
        thread.start()
    try:
        yield record
    finally:
        stop.set()
        for thread in threads:
            thread.join(240)
