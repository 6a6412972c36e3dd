"""Watching the processes of a benchmark run from /proc: what each one is, its RSS and CPU."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from streams.settings import Settings


def ready(url: str) -> bool:
    """An app's /readyz answers 200 (stages: producer up and partitions assigned)."""
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def wait_until(what: str, condition: Callable[[], bool], timeout_s: float,
               every_s: float = 1.0) -> None:  # fmt: skip
    """Poll ``condition`` until it holds; RuntimeError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(every_s)


def app_name(proc: psutil.Process) -> str:
    """download/extract/... for an app's process (`streams run <app>`); <app>-parser for its
    parser child (spawned by multiprocessing); ffmpeg; the multiprocessing resource tracker."""
    cmd = proc.cmdline()
    if not cmd:  # exited, not yet reaped (a parser child killed over its limit)
        raise psutil.ZombieProcess(proc.pid)
    if "ffmpeg" in cmd[0]:
        return "ffmpeg"
    if "resource_tracker" in " ".join(cmd):
        return "multiprocessing-resource-tracker"
    parent = proc.parent()
    if "--multiprocessing-fork" in cmd and parent is not None:
        return f"{parent.cmdline()[-1]}-parser"
    return cmd[-1]


@contextlib.contextmanager
def sampling_every(interval_s: float, sample: Callable[[], None]) -> Iterator[None]:
    """``sample()`` every ``interval_s`` in a thread while the block runs, and once at its end
    (what happened since the last tick counts too)."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval_s):
            sample()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        sample()


@dataclass
class Memory:
    """RSS (peak and over time) and CPU seconds of every process under `run all` (each app, its
    parser child, ffmpeg) and of the ``servers`` (Kafka, Weaviate), every ``interval_s``. An
    app process's peak is the kernel's high-water mark (VmHWM), so a rise between two samples
    counts (only a process killed between two samples takes its last rise with it); a
    server's is its largest sampled RSS."""

    supervisor: psutil.Process
    servers: dict[str, psutil.Process]
    interval_s: float = 0.5
    began: float = field(default_factory=time.monotonic)
    peaks: dict[str, float] = field(default_factory=dict)  # process name -> MB (VmHWM)
    cpu: dict[int, tuple[str, float]] = field(default_factory=dict)  # pid -> (name, CPU s)
    series: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def sample(self) -> None:
        now = time.monotonic() - self.began
        seen: dict[str, float] = {}
        for proc in [*self.supervisor.children(recursive=True), *self.servers.values()]:
            with contextlib.suppress(psutil.Error):  # it may have just exited
                name = self._name(proc)
                rss = proc.memory_info().rss / 2**20
                seen[name] = max(seen.get(name, 0.0), rss)  # replicas: the largest
                # A server may have run before this measurement began: its own mark is not ours.
                server = proc.pid in {s.pid for s in self.servers.values()}
                peak = rss if server else max(rss, high_water_mb(proc.pid))
                self.peaks[name] = max(self.peaks.get(name, 0.0), peak)
                times = proc.cpu_times()
                self.cpu[proc.pid] = (name, times.user + times.system)
        for name, rss in seen.items():
            self.series.setdefault(name, []).append((now, rss))

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds of each kind of process (replicas summed) since it started."""
        totals: dict[str, float] = {}
        for name, seconds in self.cpu.values():
            if name != "multiprocessing-resource-tracker":
                totals[name] = round(totals.get(name, 0.0) + seconds, 1)
        return dict(sorted(totals.items(), key=lambda item: -item[1]))

    def _name(self, proc: psutil.Process) -> str:
        for name, server in self.servers.items():
            if proc.pid == server.pid:
                return name
        return app_name(proc)

    @contextlib.contextmanager
    def sampling(self) -> Iterator[Memory]:
        with sampling_every(self.interval_s, self.sample):
            yield self


def app_url(settings: Settings, app: str) -> str:
    """An app's endpoints under `run all` (its first replica): METRICS_PORT + its place in
    APPS; the tracker's are on its status API's port."""
    from streams.pipeline import APPS, TRACKER_APP

    if app == TRACKER_APP:
        return f"http://127.0.0.1:{settings.tracker_port}"
    return f"http://127.0.0.1:{(settings.metrics_port or 0) + APPS.index(app)}"


# docstreams' metric families -> the names stage_transactions reports them by.
_TRANSACTION_FAMILIES = {"docstreams_transactions": "transactions",
                         "docstreams_records_in": "records"}  # fmt: skip


def stage_transactions(settings: Settings) -> dict[str, dict[str, float]]:
    """Each stage's first replica's Kafka transactions and input records so far, from its
    /metrics: a transaction costs the client and the broker CPU whatever it holds."""
    from streams.pipeline import STAGES

    counts: dict[str, dict[str, float]] = {}
    for stage in STAGES:
        found = dict.fromkeys(_TRANSACTION_FAMILIES.values(), 0.0)
        text = httpx.get(f"{app_url(settings, stage.name)}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            name = _TRANSACTION_FAMILIES.get(family.name)
            if name is None:
                continue
            for sample in family.samples:
                committed = sample.labels.get("outcome", "committed") == "committed"
                if sample.name.endswith("_total") and committed:
                    found[name] += sample.value
        counts[stage.name] = found
    return counts


def counter_by_label(settings: Settings, app: str, family: str, label: str) -> dict[str, float]:
    """One counter of an app's first replica's /metrics, summed by one of its labels."""
    totals: dict[str, float] = {}
    text = httpx.get(f"{app_url(settings, app)}/metrics", timeout=10).text
    for found in text_string_to_metric_families(text):
        if found.name == family:
            for sample in found.samples:
                if sample.name.endswith("_total"):
                    key = sample.labels.get(label, "")
                    totals[key] = totals.get(key, 0.0) + sample.value
    return totals


def high_water_mb(pid: int) -> float:
    """The most resident memory process ``pid`` has had (VmHWM); 0 where /proc has none."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0
