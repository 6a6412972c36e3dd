"""`run all --autoscale`: KEDA's Kafka-scaler rule and the HPA's behaviour, then the rule at work
on the real stack (a stage scaled out and back in during one document's ingest)."""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import orjson
import psutil
import pytest

from docstreams_dev.servers.openai_server import EmbeddingsApi, serving
from streams.autoscale import Autoscaler, ReplicaRule, StageLag
from streams.pipeline import STAGE_SPECS, ScalePolicy
from streams.settings import Settings
from tests.apps_helpers import (
    TENANT,
    embedded_chunk_ids,
    indexed_chunk_ids,
    isolated,
    running_apps,
    submit_and_wait,
)
from tests.kafka_helpers import wait_for
from tests.pdfs import numbered_pages, write_pdf

EXTRACT = STAGE_SPECS["extract"].scaling  # lagThreshold 24, 12 replicas at most


def rule(policy: ScalePolicy = EXTRACT, max_replicas: int | None = None) -> ReplicaRule:
    return ReplicaRule("extract", policy, max_replicas or policy.max_replicas)


def test_replicas_follow_total_lag_over_the_lag_threshold() -> None:
    assert rule().decide(0, current=1, lag=49, partitions=12).desired == 3  # ceil(49 / 24)
    assert rule().decide(0, current=1, lag=48, partitions=12).desired == 2


def test_no_more_replicas_than_partitions_nor_than_the_cap() -> None:
    assert rule().decide(0, current=1, lag=10_000, partitions=2).desired == 2
    assert rule(max_replicas=3).decide(0, current=1, lag=10_000, partitions=12).desired == 3


def test_a_count_within_ten_percent_of_the_target_is_kept() -> None:
    assert rule().decide(0, current=2, lag=52, partitions=12).desired == 2  # 52 / 48 = 1.08
    assert rule().decide(0, current=2, lag=53, partitions=12).desired == 3  # 1.10..: out


def test_scale_up_is_at_most_double_or_four_more_per_fifteen_seconds() -> None:
    scaler = rule()
    assert scaler.decide(0, current=1, lag=10_000, partitions=12).desired == 5  # 1 + 4
    assert scaler.decide(5, current=5, lag=10_000, partitions=12).desired == 5  # same period
    assert scaler.decide(16, current=5, lag=10_000, partitions=12).desired == 10  # 2 x 5


def test_scale_down_waits_for_the_window_and_goes_one_replica_per_period() -> None:
    scaler = rule()
    scaler.decide(0, current=3, lag=72, partitions=12)  # recommends 3
    assert scaler.decide(100, current=3, lag=0, partitions=12).desired == 3  # 3 in the window
    assert scaler.decide(301, current=3, lag=0, partitions=12).desired == 2
    assert scaler.decide(330, current=2, lag=0, partitions=12).desired == 2  # within 60 s
    assert scaler.decide(362, current=2, lag=0, partitions=12).desired == 1
    assert scaler.decide(500, current=1, lag=0, partitions=12).desired == 1  # never below min


def test_to_zero_only_with_min_zero_after_the_cooldown_and_back_when_active() -> None:
    scaler = rule(replace(EXTRACT, min_replicas=0, activation_lag_threshold=5))
    assert scaler.decide(0, current=1, lag=6, partitions=12).desired == 1
    assert scaler.decide(200, current=1, lag=3, partitions=12).desired == 1  # calm 200 s
    assert scaler.decide(301, current=1, lag=3, partitions=12).desired == 0  # calm 301 s
    assert scaler.decide(310, current=0, lag=6, partitions=12).desired == 1


def test_the_time_factor_shortens_every_period() -> None:
    scaler = replace(rule(), time_factor=0.01)
    scaler.decide(0, current=3, lag=72, partitions=12)
    assert scaler.decide(3.1, current=3, lag=0, partitions=12).desired == 2  # 300 s x 0.01


class Processes:
    """Replica counts kept in memory, as the autoscaler's other side."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(STAGE_SPECS, 1)

    def count(self, stage: str) -> int:
        return self.counts[stage]

    def scale(self, stage: str, replicas: int) -> None:
        self.counts[stage] = replicas


def test_a_polling_round_scales_each_stage_by_its_own_lag_and_skips_missing_topics() -> None:
    lags = {"extract": StageLag(100, 12), "embed": StageLag(30, 12), "chunk": StageLag(0, 12)}

    def read(stages: Iterable[str]) -> dict[str, StageLag]:
        return {s: lags[s] for s in stages if s in lags}

    processes = Processes()
    decisions = Autoscaler(processes, read, {"embed": 2}).tick(now=0)
    assert processes.counts == {"download": 1, "extract": 5, "chunk": 1, "embed": 2, "index": 1}
    assert {d.stage for d in decisions} == {"extract", "embed", "chunk"}


def test_every_scaled_object_in_k8s_carries_its_stages_policy() -> None:
    """One source for both: the ScaledObjects say what pipeline.py declares."""
    import yaml

    root = Path(__file__).resolve().parents[1] / "k8s" / "base"
    for name, spec in STAGE_SPECS.items():
        documents = list(yaml.safe_load_all((root / f"{name}.yaml").read_text()))
        scaled = next(d for d in documents if d and d["kind"] == "ScaledObject")["spec"]
        trigger = scaled["triggers"][0]["metadata"]
        behaviour = scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
        policy = spec.scaling
        assert scaled["minReplicaCount"] == policy.min_replicas, name
        assert scaled["maxReplicaCount"] == policy.max_replicas, name
        assert scaled["pollingInterval"] == policy.polling_interval_s, name
        assert scaled["cooldownPeriod"] == policy.cooldown_s, name
        assert int(trigger["lagThreshold"]) == policy.lag_threshold, name
        assert int(trigger["activationLagThreshold"]) == policy.activation_lag_threshold, name
        assert behaviour["stabilizationWindowSeconds"] == policy.scale_down_window_s, name
        assert behaviour["policies"] == [
            {"type": "Pods", "value": policy.scale_down_pods,
             "periodSeconds": policy.scale_down_period_s}
        ], name  # fmt: skip


# --- on the real stack ----------------------------------------------------------------------
SLOW_REQUEST_S = 0.4  # the provider's answer time: the embed stage is the slow one
PAGES = 90  # one window each: 90 records of lag for the embed stage at its peak
SCALED = re.compile(r"scaled (\{.*\})")


@pytest.fixture
def slow_provider() -> Iterator[tuple[EmbeddingsApi, str]]:
    api = EmbeddingsApi(fast=True, hang_s=SLOW_REQUEST_S)
    with serving(api) as url:
        yield api, url


def _paid_settings(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory, name: str, url: str
) -> Settings:
    return isolated(
        stack_settings,
        tmp_path_factory,
        name,
        embedder="openai",
        openai_base_url=url,
        openai_api_key="sk-test",
        openai_dimensions=384,
        pages_per_window=1,
        batch_max_messages=1,  # one window, one request per transaction
        embed_gather_wait_s=0.0,
        log_level="INFO",
        autoscale_max_replicas={"embed": 3},
        autoscale_time_factor=0.05,  # polls every 0.75 s; scales in after 15 s calm, 1 per 3 s
    )


@pytest.mark.stack
def test_a_slow_stage_is_scaled_out_to_three_and_back_to_one_and_indexes_as_a_clean_run(
    stack_settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
    slow_provider: tuple[EmbeddingsApi, str],
) -> None:
    api, url = slow_provider
    folder = tmp_path_factory.mktemp("autoscale")
    pdf = write_pdf(folder / "long.pdf", numbered_pages(PAGES, "tide"))
    settings = _paid_settings(stack_settings, tmp_path_factory, "autoscale", url)
    log = folder / "apps.log"
    counts: list[int] = []  # embed processes, sampled every 0.2 s from the start

    def embed_processes(supervisor: psutil.Process) -> int:
        found = 0
        for child in supervisor.children():
            with contextlib.suppress(psutil.Error):  # one that just exited
                found += child.cmdline()[-1:] == ["embed"]
        counts.append(found)
        return found

    with running_apps(settings, output=log, autoscale=True) as supervisor:
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.2):
                embed_processes(supervisor)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            progress = submit_and_wait(settings, str(pdf), "long", timeout_s=300)
            assert progress.completed, progress.failure
            wait_for(lambda: max(counts) == 3 and counts[-1] == 1, timeout_s=120)
        finally:
            done.set()
            sampler.join()
    scaled = [
        orjson.loads(m.group(1))
        for line in log.read_text(errors="replace").splitlines()
        if (m := SCALED.search(line))
    ]
    embed = [(e["current"], e["desired"], e["lag"]) for e in scaled if e["stage"] == "embed"]
    assert max(counts) == 3 and counts[-1] == 1
    # Out as the lag read said (ceil(lag / 12) > 1), capped at 3; in when it read none.
    assert any(to > current and lag > 12 for current, to, lag in embed), embed
    assert max(to for _, to, _ in embed) == 3, embed
    assert [(c, to) for c, to, lag in embed if to < c and lag == 0] == [(3, 2), (2, 1)], embed
    # Exactly once across the rebalances: each chunk once on the vectors topic and in Weaviate,
    # the same chunks as a clean run's (same tenant and document: the same ids).
    vectors = embedded_chunk_ids(settings, "long")
    assert len(vectors) == len(set(vectors))
    indexed = indexed_chunk_ids(settings, "long")
    assert sorted(indexed) == sorted(set(vectors))
    api.hang_s = 0.0
    clean = _paid_settings(stack_settings, tmp_path_factory, "clean", url)
    with running_apps(clean):
        assert submit_and_wait(clean, str(pdf), "long", timeout_s=300).completed
    assert sorted(indexed) == sorted(indexed_chunk_ids(clean, "long", tenant=TENANT))
