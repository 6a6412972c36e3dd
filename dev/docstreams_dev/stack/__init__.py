"""The local stack: a real Kafka broker and a real Weaviate server on 127.0.0.1, no Docker."""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from docstreams_dev.stack.kafka import KafkaBroker
from docstreams_dev.stack.service import LocalService, ServiceStatus
from docstreams_dev.stack.weaviate import WeaviateServer
from streams.settings import Settings

__all__ = ["KafkaBroker", "LocalService", "ServiceStatus", "Stack", "StartReport", "WeaviateServer"]


@dataclass(frozen=True)
class StartReport:
    service: str
    started: bool  # False: it was already running
    seconds: float


class Stack:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.kafka = KafkaBroker(settings)
        self.weaviate = WeaviateServer(settings)
        self.services: tuple[LocalService, ...] = (self.kafka, self.weaviate)

    def install(self) -> None:
        """Fetch/build what is missing (Maven and Go run side by side: both are mostly I/O)."""
        with ThreadPoolExecutor(max_workers=len(self.services)) as pool:
            for done in [pool.submit(s.install) for s in self.services if not s.installed()]:
                done.result()

    def up(self) -> list[StartReport]:
        """Idempotent: installs what is missing, starts what is not running, waits for health."""
        self.install()
        began = time.monotonic()
        started = {s.name: s.start() for s in self.services}  # both boot concurrently
        reports = []
        for service in self.services:
            service.wait_healthy(self.settings.stack_start_timeout_s)
            reports.append(
                StartReport(service.name, started[service.name], time.monotonic() - began)
            )
        return reports

    def down(self, *, purge: bool = False) -> dict[str, bool]:
        with ThreadPoolExecutor(max_workers=len(self.services)) as pool:
            stopped = dict(
                zip(
                    [s.name for s in self.services],
                    pool.map(lambda s: s.stop(), self.services),
                    strict=True,
                )
            )
        if purge:  # only our own service dirs: the state dir may hold other things
            for service in self.services:
                shutil.rmtree(service.dir, ignore_errors=True)
        return stopped

    def status(self) -> list[ServiceStatus]:
        return [s.status() for s in self.services]
