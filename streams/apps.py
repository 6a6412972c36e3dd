"""Apps: each stage is `Runner(stage)` in its own process, plus the tracker; `run all`
supervises them all."""

from __future__ import annotations

import importlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from streams.health import serve
from streams.pipeline import STAGE_SPECS, Stage
from streams.runner import Runner
from streams.settings import Settings

log = logging.getLogger(__name__)

# A stage's module (with its make_stage) is imported only by the process that runs it: each app
# then loads just its own dependencies (an extract process has no Weaviate, OpenAI or ONNX
# client in memory).
STAGES = tuple(STAGE_SPECS)
_RESTART_DELAY_S = 2.0
_QUICK_EXIT_S = 15.0
_MAX_QUICK_EXITS = 3


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
    Each child gets a stable instance id, so a restarted child fences its predecessor's open
    transaction at once instead of stalling downstream consumers until it times out.
    """
    processes = [
        (name if n == 1 else f"{name}-{n}", name)
        for name in names
        for n in range(1, (replicas or {}).get(name, 1) + 1)
    ]
    app_of = dict(processes)
    children: dict[str, subprocess.Popen[bytes]] = {}
    started: dict[str, float] = {}
    quick_exits: dict[str, int] = dict.fromkeys(app_of, 0)
    stopping = False
    failed = False

    def spawn(name: str) -> None:
        instance = settings.instance_id or "local"
        replica = name.removeprefix(app_of[name])  # "" or "-2", ...
        env = {**os.environ, "DOCSTREAMS_INSTANCE_ID": f"{instance}{replica}"}
        if settings.metrics_port:
            port = settings.metrics_port + list(app_of).index(name)
            env["DOCSTREAMS_METRICS_PORT"] = str(port)
        argv = [sys.executable, "-m", "streams", "run", app_of[name]]
        children[name] = subprocess.Popen(argv, env=env)
        started[name] = time.monotonic()

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for name in app_of:
        spawn(name)
    while not stopping:
        time.sleep(0.5)
        for name, child in list(children.items()):
            if child.poll() is None or stopping:
                continue
            # A crash right after start is a crash loop (bad settings, missing service):
            # restarting forever would only hide it.
            quick = time.monotonic() - started[name] < _QUICK_EXIT_S
            quick_exits[name] = quick_exits[name] + 1 if quick else 0
            if quick_exits[name] >= _MAX_QUICK_EXITS:
                log.error("%s keeps exiting right after start (code %s); stopping all",
                          name, child.returncode)  # fmt: skip
                stopping = failed = True
                break
            log.warning("%s exited with %s; restarting", name, child.returncode)
            time.sleep(_RESTART_DELAY_S)
            spawn(name)
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)  # each drains its batch and leaves its group
    codes = [c.wait(60) for c in children.values()]
    return 1 if failed else max(codes, default=0)
