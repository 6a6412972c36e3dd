"""Lag-driven replica counts on one machine, by the rule Kubernetes applies with KEDA.

On a cluster, KEDA's Kafka scaler reads a stage's consumer lag and the HPA turns it into a replica
count. `run all --autoscale` applies the same rule, with the same numbers (each stage's
`ScalePolicy`, which its ScaledObject in k8s/base repeats), to the stage processes it supervises:

- KEDA: the metric is the group's total lag over the input topic's partitions, capped at
  partitions x lagThreshold (more replicas than partitions would sit idle: allowIdleConsumers
  false); the stage is active while the lag is above activationLagThreshold; it is scaled to
  zero only with minReplicaCount 0, after cooldownPeriod without activity.
- HPA (AverageValue target): desired = ceil(metric / lagThreshold), kept as is when within 10 %
  of the current count; within [max(1, min), max]. Up: at once, by at most max(100 %, 4 pods) per
  15 s (the HPA's default). Down: to the highest recommendation of the stabilization window, by
  at most ``scale_down_pods`` per ``scale_down_period_s``.

A replica scaled in gets SIGTERM: it finishes and commits its batch and leaves the group.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import orjson

from streams.pipeline import STAGE_SPECS, ScalePolicy

log = logging.getLogger(__name__)

HPA_TOLERANCE = 0.1  # --horizontal-pod-autoscaler-tolerance
SCALE_UP_PERIOD_S = 15.0  # the HPA's default scale-up policies: +100 % or +4 pods per 15 s
SCALE_UP_PODS = 4


@dataclass(frozen=True)
class Decision:
    """What the rule made of one reading of a stage's lag."""

    stage: str
    lag: int
    partitions: int
    active: bool
    current: int
    recommended: int  # the HPA's recommendation before stabilization and rate limits
    desired: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ReplicaRule:
    """One stage's rule, with the recent past it needs (recommendations, scale-downs)."""

    stage: str
    policy: ScalePolicy
    max_replicas: int  # the policy's, or lower where this machine caps it
    time_factor: float = 1.0  # scales every period of the rule (tests, demos)
    _recommendations: deque[tuple[float, int]] = field(default_factory=deque)
    _scale_ups: deque[tuple[float, int]] = field(default_factory=deque)  # (at, replicas added)
    _scale_downs: deque[tuple[float, int]] = field(default_factory=deque)
    _last_active: float | None = None

    def seconds(self, value: float) -> float:
        return value * self.time_factor

    def decide(self, now: float, current: int, lag: int, partitions: int) -> Decision:
        policy = self.policy
        threshold = policy.lag_threshold
        active = lag > policy.activation_lag_threshold
        if active:
            self._last_active = now
        metric = min(lag, max(partitions, 1) * threshold)  # allowIdleConsumers: false
        if current > 0 and abs(metric / (current * threshold) - 1) <= HPA_TOLERANCE:
            recommended = current
        else:
            recommended = math.ceil(metric / threshold)
        recommended = max(1, policy.min_replicas, min(recommended, self.max_replicas))
        desired = self._limited(now, current, recommended)
        if (
            policy.min_replicas == 0
            and not active
            and self._calm_for(now) >= self.seconds(policy.cooldown_s)
        ):
            desired = 0
        elif current == 0 and active:
            desired = max(desired, 1)
        return Decision(self.stage, lag, partitions, active, current, recommended, desired)

    def _calm_for(self, now: float) -> float:
        return math.inf if self._last_active is None else now - self._last_active

    def _limited(self, now: float, current: int, recommended: int) -> int:
        """The HPA's behaviour: stabilization and rate limits."""
        policy = self.policy
        window = self.seconds(policy.scale_down_window_s)
        self._recommendations.append((now, recommended))
        while self._recommendations and self._recommendations[0][0] < now - window:
            self._recommendations.popleft()
        if recommended > current:
            added = _recent(self._scale_ups, now, self.seconds(SCALE_UP_PERIOD_S))
            start = current - added  # the count at the start of the period
            allowed = max(2 * start, start + SCALE_UP_PODS) - current
            desired = current + max(0, min(recommended - current, allowed))
            if desired > current:
                self._scale_ups.append((now, desired - current))
            return desired
        stabilized = max(n for _, n in self._recommendations)
        if stabilized >= current:
            return current
        removed = _recent(self._scale_downs, now, self.seconds(policy.scale_down_period_s))
        allowed = max(0, policy.scale_down_pods - removed)
        desired = current - min(current - stabilized, allowed)
        if desired < current:
            self._scale_downs.append((now, current - desired))
        return desired


def _recent(events: deque[tuple[float, int]], now: float, period: float) -> int:
    while events and events[0][0] <= now - period:
        events.popleft()
    return sum(n for _, n in events)


class Replicas(Protocol):
    """The processes of each stage, as a Deployment's pods are to the HPA."""

    def count(self, stage: str) -> int: ...

    def scale(self, stage: str, replicas: int) -> None: ...


@dataclass(frozen=True)
class StageLag:
    lag: int
    partitions: int


LagReader = Callable[[Iterable[str]], Mapping[str, StageLag]]


class Autoscaler:
    """Every polling interval: read each stage's lag, decide, and scale its processes."""

    def __init__(
        self,
        replicas: Replicas,
        read_lags: LagReader,
        max_replicas: Mapping[str, int] | None = None,
        time_factor: float = 1.0,
        stages: Iterable[str] = STAGE_SPECS,
    ) -> None:
        caps = max_replicas or {}
        self.replicas = replicas
        self.read_lags = read_lags
        self.rules = {
            name: ReplicaRule(
                name,
                STAGE_SPECS[name].scaling,
                min(STAGE_SPECS[name].scaling.max_replicas, caps.get(name, 10**6)),
                time_factor,
            )
            for name in stages
        }
        self.interval_s = min(r.seconds(r.policy.polling_interval_s) for r in self.rules.values())

    def tick(self, now: float | None = None) -> list[Decision]:
        """One polling round; the decisions, scaled or not."""
        now = time.monotonic() if now is None else now
        lags = self.read_lags(self.rules)
        decisions = []
        for name, rule in self.rules.items():
            if name not in lags:
                continue  # its topic is not there (yet): nothing to scale by
            current = self.replicas.count(name)
            decision = rule.decide(now, current, lags[name].lag, lags[name].partitions)
            decisions.append(decision)
            if decision.desired != current:
                log.info("scaled %s", orjson.dumps(decision.to_dict()).decode())
                self.replicas.scale(name, decision.desired)
        return decisions

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop``; a failed lag reading (a broker restart) keeps the counts."""
        while not stop.wait(self.interval_s):
            try:
                self.tick()
            except Exception:  # the next poll tries again, as KEDA does
                log.warning("autoscaler: could not read the lag; counts kept", exc_info=True)


def kafka_lag_reader(settings: Any) -> LagReader:
    """Each stage's total lag and partition count, as KEDA's Kafka scaler reads them."""
    from streams.lag import stage_lags

    def read(stages: Iterable[str]) -> dict[str, StageLag]:
        totals: dict[str, StageLag] = {}
        for row in stage_lags(settings, stages):
            before = totals.get(row.stage, StageLag(0, 0))
            totals[row.stage] = StageLag(before.lag + row.lag, before.partitions + 1)
        return totals

    return read
