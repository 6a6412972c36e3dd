"""Kubernetes limits, honoured on real work: the settings of k8s/base/configmap.yaml and each
stage pod's memory limit, enforced here by a cgroup, on the 1 GB PDF, a few-hundred-page manual
and a hostile PDF.

- Settings: every key of the ConfigMap that is not an address, a port or a path (those point at
  the cluster) is applied to the local stack: PARSER_MEMORY_MB above all (the address-space cap
  of the parser child).
- Limits: each stage process and its parser child are moved into a cgroup (v1 memory
  controller, as a container runtime does) whose limit is the Deployment's
  ``resources.limits.memory``. The kernel then OOM-kills inside it exactly as it would in the
  pod. Needs root and a writable /sys/fs/cgroup/memory; without them the run says so and
  measures only.
- Inputs: the bench's 1 GB / 26,646-page PDF (bench/run.py builds it), R's "Writing R
  Extensions" manual (r-doc-pdf), and a PDF whose one page inflates to 700 MB of drawing
  operators (tests/hostile_files.py): it must end as a dead letter (resource_limit), with no
  OOM kill in any cgroup and the stage processes still the same.

Reported per stage: the peak RSS of the process tree (stage + parser child, summed at each
0.5 s sample: what the limit sees, page cache aside), the cgroup's OOM kills and failcnt.

    .venv/bin/python bench/k8s_limits.py [--skip-large]

Prints one JSON line last; the result is written down in docs/benchmarks.md by hand.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil
import yaml

from bench.processes import app_name, sampling_every
from bench.run import TENANT, apps, ensure_packages, large_pdf
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
MANUAL = Path("/usr/share/R/doc/manual/R-exts.pdf")
CGROUP_ROOT = Path("/sys/fs/cgroup/memory")
# ConfigMap keys that say where the cluster's services and volumes are, not how to process.
_WHERE = ("KAFKA_", "WEAVIATE_", "TOPIC_PREFIX", "BLOB_DIR", "METRICS_", "TRACKER_", "EMBEDDER")
LIMITED = ("download", "extract")


def configmap_settings() -> dict[str, Any]:
    """The ConfigMap's processing settings, as Settings field names and values."""
    document = yaml.safe_load((ROOT / "k8s" / "base" / "configmap.yaml").read_text())
    chosen: dict[str, Any] = {}
    for key, value in document["data"].items():
        name = key.removeprefix("DOCSTREAMS_")
        if not name.startswith(_WHERE):
            chosen[name.lower()] = value
    return chosen


def pod_memory_limits() -> dict[str, int]:
    """Each stage Deployment's container memory limit, in bytes."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    limits = {}
    for stage in LIMITED:
        for document in yaml.safe_load_all((ROOT / "k8s" / "base" / f"{stage}.yaml").read_text()):
            if document and document.get("kind") == "Deployment":
                container = document["spec"]["template"]["spec"]["containers"][0]
                text = container["resources"]["limits"]["memory"]
                limits[stage] = int(text[:-2]) * units[text[-2:]]
    return limits


@dataclass
class PodCgroup:
    """A memory cgroup standing in for one pod: its limit, and what the kernel did under it."""

    stage: str
    limit: int
    path: Path

    def adopt(self, pids: list[int]) -> None:
        for pid in pids:
            (self.path / "cgroup.procs").write_text(str(pid))

    def report(self) -> dict[str, Any]:
        control = dict(
            line.split() for line in (self.path / "memory.oom_control").read_text().splitlines()
        )
        return {
            "limit_mib": self.limit // 2**20,
            "oom_kills": int(control.get("oom_kill", -1)),
            "failcnt": int((self.path / "memory.failcnt").read_text()),
            "max_usage_mib_with_page_cache": round(
                int((self.path / "memory.max_usage_in_bytes").read_text()) / 2**20
            ),
        }


@contextlib.contextmanager
def pod_cgroups(supervisor: psutil.Process, limits: dict[str, int]) -> Iterator[list[PodCgroup]]:
    if os.geteuid() != 0 or not os.access(CGROUP_ROOT, os.W_OK):
        logging.warning("no writable %s: the pod limits are not enforced, only measured",
                        CGROUP_ROOT)  # fmt: skip
        yield []
        return
    groups = []
    for stage, limit in limits.items():
        path = CGROUP_ROOT / f"docstreams-bench-{stage}-{os.getpid()}"
        path.mkdir()
        (path / "memory.limit_in_bytes").write_text(str(limit))
        (path / "memory.memsw.limit_in_bytes").write_text(str(limit))  # no swap either
        group = PodCgroup(stage, limit, path)
        tree = [p for p in supervisor.children() if app_name(p) == stage]
        group.adopt([p.pid for top in tree for p in [top, *top.children(recursive=True)]])
        groups.append(group)
    try:
        yield groups
    finally:
        for group in groups:
            for pid in (group.path / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):  # it may have exited meanwhile
                    (CGROUP_ROOT / "cgroup.procs").write_text(pid)
            with contextlib.suppress(OSError):
                group.path.rmdir()


@dataclass
class TreePeaks:
    """Peak RSS of each limited stage's process tree, summed per sample."""

    supervisor: psutil.Process
    peaks: dict[str, float] = field(default_factory=dict)

    def _sample(self) -> None:
        for top in self.supervisor.children():
            with contextlib.suppress(psutil.Error):
                stage = app_name(top)
                if stage in LIMITED:
                    tree = [top, *top.children(recursive=True)]
                    rss = sum(p.memory_info().rss for p in tree) / 2**20
                    self.peaks[stage] = max(self.peaks.get(stage, 0.0), rss)

    @contextlib.contextmanager
    def sampling(self) -> Iterator[TreePeaks]:
        with sampling_every(0.5, self._sample):
            yield self


def submit_and_follow(settings: Settings, path: Path, document_id: str,
                      timeout_s: float) -> tuple[float, Any]:  # fmt: skip
    from streams.producer import submit
    from streams.progress import follow

    began = time.monotonic()
    request = submit(settings, str(path), TENANT, document_id)
    progress = follow(settings, TENANT, document_id, request.submitted_at, timeout_s,
                      lambda _: None)  # fmt: skip
    return time.monotonic() - began, progress


def outcome(seconds: float, progress: Any) -> dict[str, Any]:
    if progress.completed is not None:
        return {"completed": True, "seconds": round(seconds, 1),
                "chunks": progress.completed.chunks}  # fmt: skip
    failure = progress.failure
    reason = None if failure is None else f"{failure.stage}: {failure.reason}"
    return {"completed": False, "seconds": round(seconds, 1), "failed": reason}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-large", action="store_true", help="only the manual and the bomb")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from docstreams_dev.servers.openai_server import EmbeddingsApi, serving
    from docstreams_dev.stack import Stack
    from docstreams_dev.stack.ports import private_stack_settings
    from tests.hostile_files import flate_bomb_pdf

    ensure_packages()
    large = None if args.skip_large else large_pdf()
    applied = configmap_settings()
    limits = pod_memory_limits()
    result: dict[str, Any] = {
        "configmap": applied,
        "pod_limits_mib": {k: v // 2**20 for k, v in limits.items()},
    }
    with tempfile.TemporaryDirectory(prefix="docstreams-k8s-") as scratch:
        workdir = Path(scratch)
        bomb = flate_bomb_pdf(workdir / "bomb.pdf", 700)
        stack_settings = private_stack_settings(
            workdir / "stack", blob_dir=workdir / "blobs", local_source_roots=[workdir, ROOT,
            large.parent if large else workdir, MANUAL.parent], max_download_bytes=4 * 2**30,
        )  # fmt: skip
        stack = Stack(stack_settings)
        stack.up()
        try:
            with serving(EmbeddingsApi(fast=True)) as url:
                settings = Settings.model_validate({
                    **stack_settings.model_dump(), **applied, "topic_prefix": "k8s.",
                    "weaviate_collection": "BenchK8s", "embedder": "openai",
                    "openai_base_url": url, "openai_api_key": "sk-bench",
                    "openai_dimensions": 384,
                })  # fmt: skip
                with apps(settings, workdir / "apps.log") as supervisor:
                    stages = {app_name(p): p.pid for p in supervisor.children()}
                    peaks = TreePeaks(supervisor)
                    with pod_cgroups(supervisor, limits) as groups, peaks.sampling():
                        runs: dict[str, Any] = {}
                        if large is not None:
                            runs["large"] = outcome(*submit_and_follow(settings, large, "large",
                                                                       3 * 3600))  # fmt: skip
                        runs["manual"] = outcome(*submit_and_follow(settings, MANUAL, "manual",
                                                                    900))  # fmt: skip
                        runs["flate_bomb"] = outcome(*submit_and_follow(settings, bomb, "bomb",
                                                                        300))  # fmt: skip
                        result["runs"] = runs
                        result["cgroups"] = {g.stage: g.report() for g in groups}
                    result["tree_peak_rss_mb"] = {k: round(v, 1) for k, v in peaks.peaks.items()}
                    after = {app_name(p): p.pid for p in supervisor.children()}
                    result["stage_processes_unchanged"] = after == stages
        finally:
            stack.down()
    import orjson

    print(orjson.dumps(result).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
