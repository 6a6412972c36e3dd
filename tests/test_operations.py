"""Operating the apps on the real broker: lag per partition, /metrics, /healthz and /readyz."""

from __future__ import annotations

import threading

import httpx
import orjson
import pytest
from confluent_kafka import Producer
from prometheus_client import CollectorRegistry, generate_latest
from typer.testing import CliRunner

from streams.cli import app
from streams.health import serve
from streams.kafka_clients import base_config
from streams.lag import LagCollector, stage_lags
from streams.messages import ChunkBatch, Page, PageBatch
from streams.pipeline import STAGE_SPECS, Stage
from streams.runner import Runner
from streams.settings import Settings, as_environment
from streams.topics import topic_name
from tests.apps_helpers import free_port_block
from tests.kafka_helpers import read_topic, wait_for
from tests.runner_app import one_chunk_per_page

pytestmark = pytest.mark.stack


def _lag_total(settings: Settings) -> int:
    return sum(r.lag for r in stage_lags(settings, ["chunk"]))


def test_lag_counts_waiting_records_then_falls_to_zero_and_the_endpoints_show_the_run(
    topics: Settings,
) -> None:
    producer = Producer(base_config(topics))
    for i in range(5):
        batch = PageBatch(tenant_id="t1", document_id=f"d{i}", version="cd" * 32, window=0,
                          window_count=1, pages=[Page(number=1, text="x")],
                          content_type="text/plain")  # fmt: skip
        producer.produce(topic_name(topics, "pages"), key=b"one-partition", value=batch.to_wire())
    producer.flush(30)
    assert _lag_total(topics) == 5

    runner = Runner(Stage(STAGE_SPECS["chunk"], one_chunk_per_page), topics)
    port = free_port_block(1)
    server = serve(runner.health, "127.0.0.1", port)
    base = f"http://127.0.0.1:{port}"
    assert httpx.get(f"{base}/readyz").status_code == 503  # not started: no producer yet
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(read_topic(topics, "chunks")) == 5)
        wait_for(lambda: httpx.get(f"{base}/readyz").status_code == 200)
        ready = httpx.get(f"{base}/readyz").json()
        assert ready["producer_ready"] and ready["assigned_partitions"]
        assert httpx.get(f"{base}/healthz").status_code == 200
        metrics = httpx.get(f"{base}/metrics").text
        assert 'docstreams_records_in_total{stage="chunk"} 5.0' in metrics
        assert "process_resident_memory_bytes" in metrics
        chunks_topic = topic_name(topics, "chunks")
        assert (f'docstreams_messages_out_total{{stage="chunk",topic="{chunks_topic}",'
                f'type="ChunkBatch"}} 5.0') in metrics  # fmt: skip
    finally:
        runner.stop()
        thread.join(60)
        server.shutdown()
    produced = sorted(ChunkBatch.from_wire(v).document_id for v in read_topic(topics, "chunks"))
    assert produced == [f"d{i}" for i in range(5)]

    # The last commit left a transaction marker after the last record: still lag 0.
    assert _lag_total(topics) == 0
    rows = orjson.loads(CliRunner().invoke(app, ["lag", "--json"],
                                           env=as_environment(topics)).stdout)  # fmt: skip
    assert {r["stage"] for r in rows} == {"download", "extract", "chunk", "embed", "index"}
    assert sum(r["lag"] for r in rows if r["stage"] == "chunk") == 0
    registry = CollectorRegistry()
    registry.register(LagCollector(topics))
    exported = generate_latest(registry).decode()
    group = f"{topics.topic_prefix}chunk"
    assert f'kafka_consumergroup_lag_sum{{consumergroup="{group}",topic=' in exported
