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
from streams.pipeline import STAGE_SPECS, Stage
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


def run_all(settings: Settings, names: list[str], replicas: dict[str, int] | None = None) -> int:
    """Every stage as its own process (as in production); a crashed one is restarted.

    ``replicas`` runs more than one process of a stage (``extract-2``, ...), as a Deployment's
    replicas would: they share its consumer group and split its partitions.
    """
    supervisor = Supervisor(app_processes(settings, names, replicas or {}))
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    supervisor.start_all()
    crash_loop = not supervisor.supervise(stopping)
    code = supervisor.stop_all(_STOP_TIMEOUT_S)
    return 1 if crash_loop else code


def app_processes(
    settings: Settings,
    names: list[str],
    replicas: dict[str, int],
    environment: Mapping[str, str] | None = None,
) -> list[ChildSpec]:
    """`docstreams run <app>` per process, named ``extract``, ``extract-2``, ...

    Each gets a stable instance id, so a restarted child fences its predecessor's open
    transaction at once instead of stalling downstream consumers until it times out.
    ``environment`` replaces ours as the base of each child's.
    """
    names_and_apps = [
        (name if n == 1 else f"{name}-{n}", name)
        for name in names
        for n in range(1, replicas.get(name, 1) + 1)
    ]
    instance = settings.instance_id or "local"
    specs = []
    for index, (name, app) in enumerate(names_and_apps):
        replica = name.removeprefix(app)  # "" or "-2", ...
        env = {**(environment or os.environ), "DOCSTREAMS_INSTANCE_ID": f"{instance}{replica}"}
        if settings.metrics_port:
            env["DOCSTREAMS_METRICS_PORT"] = str(settings.metrics_port + index)
        specs.append(ChildSpec(name, [sys.executable, "-m", "streams", "run", app], env))
    return specs
