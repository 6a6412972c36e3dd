"""Apps: each stage is `Runner(stage)` in its own process, plus the tracker; `run all`
supervises them all."""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

from streams.health import serve
from streams.pipeline import APPS, STAGE_SPECS, TRACKER_APP, Stage
from streams.runner import Runner
from streams.settings import Settings
from streams.supervisor import ChildSpec, Supervisor

log = logging.getLogger(__name__)

# A stage's module (with its make_stage) is imported only by the process that runs it: each app
# then loads just its own dependencies (an extract process has no Weaviate, OpenAI or ONNX
# client in memory).
STAGES = tuple(STAGE_SPECS)
_STOP_TIMEOUT_S = 60.0


def run_stage(name: str, settings: Settings) -> None:
    module = importlib.import_module(STAGE_SPECS[name].module)
    make_stage: Callable[[Settings], Stage[Any]] = module.make_stage
    runner = Runner(make_stage(settings), settings)
    runner.install_signal_handlers()
    if settings.metrics_port:
        serve(runner.health, settings.metrics_host, settings.metrics_port)
    runner.run()


def run_all(
    settings: Settings,
    names: list[str],
    replicas: dict[str, int] | None = None,
    autoscale: bool = False,
) -> int:
    """Every stage as its own process (as in production); a crashed one is restarted.

    ``replicas`` runs more than one process of a stage (``extract-2``, ...), as a Deployment's
    replicas would: they share its consumer group and split its partitions. ``autoscale`` sets
    each stage's process count from its lag, by KEDA's rule (streams/autoscale.py).
    """
    # Replicas that may be scaled in join as dynamic members (see StageProcesses).
    static = None if autoscale else True
    supervisor = Supervisor(app_processes(settings, names, replicas or {}, static=static))
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    supervisor.start_all()
    if autoscale:
        from streams.autoscale import Autoscaler, kafka_lag_reader

        autoscaler = Autoscaler(
            StageProcesses(supervisor, settings),
            kafka_lag_reader(settings),
            settings.autoscale_max_replicas,
            settings.autoscale_time_factor,
            [n for n in names if n in STAGE_SPECS],
        )
        threading.Thread(target=autoscaler.run, args=(stopping,), daemon=True).start()
    crash_loop = not supervisor.supervise(stopping)
    code = supervisor.stop_all(_STOP_TIMEOUT_S)
    return 1 if crash_loop else code


class StageProcesses:
    """A supervisor's processes of each stage, scaled as the HPA scales a Deployment's pods.

    A new replica takes the lowest free number; scale-in retires the highest. Replicas after the
    first join their group as dynamic members, so one scaled in hands its partitions over at once
    (a static member's would wait out the session timeout)."""

    def __init__(
        self,
        supervisor: Supervisor,
        settings: Settings,
        environment: Mapping[str, str] | None = None,
        customize: Callable[[ChildSpec], ChildSpec] = lambda spec: spec,
    ) -> None:
        self.supervisor = supervisor
        self.settings = settings
        self.environment = environment
        self.customize = customize  # e.g. a log file per process (the chaos run)

    def _numbers(self, stage: str, names: list[str]) -> dict[int, str]:
        found = {}
        for name in names:
            app, _, number = name.partition("-")
            if app == stage:
                found[int(number or 1)] = name
        return found

    def count(self, stage: str) -> int:
        return len(self._numbers(stage, self.supervisor.members()))

    def scale(self, stage: str, replicas: int) -> None:
        members = self._numbers(stage, self.supervisor.members())
        taken = self._numbers(stage, list(self.supervisor.children))  # retiring ones too
        for number in sorted(members, reverse=True)[: max(0, len(members) - replicas)]:
            self.supervisor.retire(members[number])
        free = (n for n in range(1, 10**6) if n not in taken)
        for _ in range(replicas - len(members)):
            spec = replica_spec(self.settings, stage, next(free), self.environment)
            self.supervisor.add(self.customize(spec))


def app_processes(
    settings: Settings,
    names: list[str],
    replicas: dict[str, int],
    environment: Mapping[str, str] | None = None,
    static: bool | None = True,
) -> list[ChildSpec]:
    """`docstreams run <app>` per process, named ``extract``, ``extract-2``, ... (replica_spec)"""
    return [
        replica_spec(settings, name, number, environment, static)
        for name in names
        for number in range(1, replicas.get(name, 1) + 1)
    ]


def replica_spec(
    settings: Settings,
    app: str,
    number: int,
    environment: Mapping[str, str] | None = None,
    static: bool | None = None,
) -> ChildSpec:
    """Process ``number`` of an app: ``extract``, ``extract-2``, ...

    Each gets a stable instance id, so a restarted child fences its predecessor's open
    transaction at once instead of stalling downstream consumers until it times out; ``static``
    (default: only the first) also makes it a static group member. Its endpoints, with
    METRICS_PORT set, are at that port + the app's place in APPS (+ len(APPS) per replica after
    the first); a tracker replica's status API at TRACKER_PORT + number - 1. ``environment``
    replaces ours as the base of the child's.
    """
    replica = "" if number == 1 else f"-{number}"
    instance = settings.instance_id or "local"
    env = {**(environment or os.environ), "DOCSTREAMS_INSTANCE_ID": f"{instance}{replica}"}
    env["DOCSTREAMS_STATIC_MEMBERSHIP"] = str(number == 1 if static is None else static).lower()
    if settings.metrics_port:
        port = settings.metrics_port + APPS.index(app) + len(APPS) * (number - 1)
        env["DOCSTREAMS_METRICS_PORT"] = str(port)
    if app == TRACKER_APP and number > 1:  # the status API of each replica, side by side
        env["DOCSTREAMS_TRACKER_PORT"] = str(settings.tracker_port + number - 1)
    return ChildSpec(f"{app}{replica}", [sys.executable, "-m", "streams", "run", app], env)
