"""The faults of a chaos run: kills of random apps, broker restarts, a Weaviate outage and (with
``scale_events``) stages scaled out and in, on a schedule drawn from the plan's seed."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from docstreams_dev.chaos.plan import ChaosPlan
from docstreams_dev.stack import Stack
from streams.apps import StageProcesses
from streams.pipeline import STAGE_SPECS
from streams.supervisor import Supervisor


@dataclass
class ChaosLog:
    kills: list[tuple[float, str]] = field(default_factory=list)
    broker_restarts: list[float] = field(default_factory=list)
    weaviate_outages: list[tuple[float, float]] = field(default_factory=list)
    scales: list[tuple[float, str, int, int]] = field(default_factory=list)  # at, stage, from, to


@contextmanager
def chaos(
    plan: ChaosPlan,
    apps: Supervisor,
    stack: Stack,
    rng: random.Random,
    finished: threading.Event,
    stages: StageProcesses | None = None,
) -> Iterator[ChaosLog]:
    """Kills, a broker restart, a Weaviate outage and scale events (of ``stages``), scheduled
    from the seed, in threads. Kills aim at each app's first process, which scaling never
    retires."""
    record = ChaosLog()
    began = time.monotonic()
    stop = threading.Event()
    kill_gaps = [rng.uniform(*plan.kill_gap_s) for _ in range(plan.kills)]

    def replicas(app: str) -> int:
        return plan.tracker_replicas if app == "tracker" else plan.replicas

    targets = [f"{app}{'' if n == 1 else f'-{n}'}" for app in plan.victims
               for n in range(1, replicas(app) + 1)]  # fmt: skip
    victims = [rng.choice(targets) for _ in range(plan.kills)]
    downtimes = [rng.uniform(0.2, 3.0) for _ in range(plan.kills)]
    broker_at = sorted(rng.uniform(5.0, 40.0) for _ in range(plan.broker_restarts))
    weaviate_at = rng.uniform(5.0, 40.0)
    # Drawn last, and only when asked for, so the other faults of a seed stay as they were.
    scale_plan = _draw_scale_events(rng, plan.scale_events) if plan.scale_events else []

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

    def scaler() -> None:
        for gap, stage, replicas in scale_plan:
            if stages is None or stop.wait(gap) or finished.is_set():
                return
            before = stages.count(stage)
            stages.scale(stage, replicas)
            record.scales.append((round(time.monotonic() - began, 1), stage, before, replicas))

    jobs = (killer, broker, weaviate, scaler)
    threads = [threading.Thread(target=job, daemon=True) for job in jobs]
    for thread in threads:
        thread.start()
    try:
        yield record
    finally:
        stop.set()
        for thread in threads:
            thread.join(240)


def _draw_scale_events(rng: random.Random, count: int) -> list[tuple[float, str, int]]:
    """(gap before it, stage, replicas to set): a stage at one process goes to 2-4, one scaled
    out goes back to one, as lag rising and falling would move it."""
    replicas = dict.fromkeys(STAGE_SPECS, 1)
    events = []
    for _ in range(count):
        stage = rng.choice(sorted(STAGE_SPECS))
        replicas[stage] = rng.randint(2, 4) if replicas[stage] == 1 else 1
        events.append((rng.uniform(2.0, 8.0), stage, replicas[stage]))
    return events
