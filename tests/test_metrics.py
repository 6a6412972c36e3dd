"""Domain counters come from committed outputs: pages, chunks, tokens, objects, dead letters."""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY

from streams import metrics
from streams.messages import DeadLetter, WindowEmbedded, WindowExtracted, WindowIndexed

WINDOW: dict[str, Any] = {"tenant_id": "t", "document_id": "d", "version": "e" * 64, "window": 0,
          "window_count": 1}  # fmt: skip


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_committed_outputs_feed_the_domain_counters() -> None:
    before = {
        "pages": _value("docstreams_pages_extracted_total", stage="m"),
        "failed": _value("docstreams_pages_failed_total", stage="m"),
        "tokens": _value("docstreams_embedding_tokens_total", stage="m"),
        "objects": _value("docstreams_weaviate_objects_written_total", stage="m"),
        "dead": _value("docstreams_dead_letters_total", stage="m", error="PoisonInput"),
    }
    metrics.count_committed("m", [
        WindowExtracted(**WINDOW, items=25, failed_pages=2),
        WindowEmbedded(**WINDOW, items=80, tokens=12_000),
        WindowIndexed(**WINDOW, items=80),
        DeadLetter(stage="m", reason="x", error_class="PoisonInput", attempts=1,
                   source_topic="t", source_partition=0, source_offset=0),
    ])  # fmt: skip
    assert _value("docstreams_pages_extracted_total", stage="m") - before["pages"] == 25
    assert _value("docstreams_pages_failed_total", stage="m") - before["failed"] == 2
    assert _value("docstreams_embedding_tokens_total", stage="m") - before["tokens"] == 12_000
    assert _value("docstreams_weaviate_objects_written_total", stage="m") - before["objects"] == 80
    dead = _value("docstreams_dead_letters_total", stage="m", error="PoisonInput")
    assert dead - before["dead"] == 1
