"""What Kafka and Weaviate have in common as local services: install once, start, probe, stop."""

from __future__ import annotations

import shutil
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from docstreams_dev.errors import StackError
from docstreams_dev.stack import process
from streams.settings import Settings

_PROBE_INTERVAL_S = 0.5


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    version: str
    installed: bool
    running: bool
    healthy: bool
    pid: int | None
    rss_mb: float | None
    ports: dict[str, int]
    log: str
    data_dir: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LocalService(ABC):
    """One server process of the local stack, owned through a pid file in the state dir."""

    name: str

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.state_dir / self.name
        self.data_dir = self.dir / "data"
        self.log_path = self.dir / "logs" / f"{self.name}.out"
        self.pid_path = self.dir / f"{self.name}.pid"

    # --- what each service defines ---------------------------------------------------------
    @property
    @abstractmethod
    def version(self) -> str: ...

    @property
    @abstractmethod
    def ports(self) -> dict[str, int]: ...

    @abstractmethod
    def installed(self) -> bool: ...

    @abstractmethod
    def install(self) -> None:
        """Fetch/build the server into the cache dir (slow once, then a no-op)."""

    @abstractmethod
    def prepare(self) -> None:
        """Write config and initialise storage in the state dir before a start."""

    @abstractmethod
    def command(self) -> tuple[Sequence[str], Mapping[str, str]]:
        """argv and environment of the server process."""

    @abstractmethod
    def healthy(self) -> bool:
        """The service answers its clients (not merely that the process exists)."""

    # --- shared lifecycle ------------------------------------------------------------------
    def process(self) -> psutil.Process | None:
        return process.running_process(self.pid_path)

    def start(self) -> bool:
        """Start unless already running; returns True if a new process was started."""
        if self.process() is not None:
            return False
        if not self.installed():
            self.install()
        self._check_ports_free()
        self.prepare()
        argv, env = self.command()
        process.spawn(argv, env=env, cwd=self.dir, log_path=self.log_path, pid_path=self.pid_path)
        return True

    def wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process() is None:
                raise StackError(
                    f"{self.name} exited during start-up; last lines of {self.log_path}:\n"
                    + process.tail(self.log_path)
                )
            if self.healthy():
                return
            time.sleep(_PROBE_INTERVAL_S)
        raise StackError(
            f"{self.name} did not become healthy within {timeout_s:.0f}s; last lines of "
            f"{self.log_path}:\n{process.tail(self.log_path)}"
        )

    def stop(self, timeout_s: float = 60.0) -> bool:
        return process.stop(self.pid_path, timeout_s=timeout_s)

    def status(self) -> ServiceStatus:
        proc = self.process()
        healthy = proc is not None and self.healthy()
        rss = process.rss_bytes(proc) if proc else None
        return ServiceStatus(
            name=self.name,
            version=self.version,
            installed=self.installed(),
            running=proc is not None,
            healthy=healthy,
            pid=proc.pid if proc else None,
            rss_mb=round(rss / 2**20, 1) if rss else None,
            ports=self.ports,
            log=str(self.log_path),
            data_dir=str(self.data_dir),
        )

    def _check_ports_free(self) -> None:
        for role, port in self.ports.items():
            if not process.port_free(port):
                owner = process.port_owner(port)
                who = f" (pid {owner})" if owner else ""
                raise StackError(
                    f"{self.name} cannot start: its {role} port {port} is already in use{who}. "
                    "Stop that program or choose other ports (see the settings table in README)."
                )


def atomic_dir(final: Path) -> Path:
    """A fresh sibling temp dir to fill and then rename onto ``final``."""
    tmp = final.with_name(final.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp
