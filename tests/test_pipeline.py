"""End to end on the real stack: `docstreams run all` (five stage processes), real documents in,
searchable chunks in Weaviate out; bad documents in the DLQ; a killed embed process."""

from __future__ import annotations

import signal
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docx
import httpx
import orjson
import psutil
import pytest
from confluent_kafka import Producer
from typer.testing import CliRunner

from docstreams_dev.servers.http_server import Behaviour, serving
from docstreams_dev.stack import Stack
from streams.adapters.weaviate_store import ChunkIndex
from streams.cli import app
from streams.kafka_clients import producer_config
from streams.messages import ChunkBatch, DeadLetter, DocumentSubmitted
from streams.pipeline import APPS
from streams.producer import submit
from streams.progress import DocumentProgress, follow
from streams.settings import Settings, as_environment
from streams.topics import topic_name
from tests.apps_helpers import app_process, free_port_block, running_apps
from tests.kafka_helpers import read_topic, wait_for
from tests.pdfs import SAMPLE, SAMPLE_PAGE, SAMPLE_SENTENCE, numbered_pages, write_pdf

pytestmark = pytest.mark.stack
ROOT = Path(__file__).resolve().parents[1]
TENANT = "acme"


@pytest.fixture(scope="module")
def pipeline(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, psutil.Process]]:
    run = uuid.uuid4().hex[:8]
    settings = stack_settings.model_copy(
        update={
            "topic_prefix": f"e2e{run}.",
            "weaviate_collection": f"Chunks{run}",
            "blob_dir": tmp_path_factory.mktemp("blobs"),
            "allow_local_sources": True,
            "fetch_allowlist": ["127.0.0.1/32"],
            "fetch_attempts": 2,
            "pages_per_window": 20,
            "batch_max_wait_s": 0.2,
            "metrics_port": free_port_block(len(APPS)),
        }
    )
    with running_apps(settings) as supervisor:
        yield settings, supervisor


def _submit_and_wait(settings: Settings, source: str, document_id: str) -> DocumentProgress:
    request: DocumentSubmitted = submit(settings, source, TENANT, document_id)
    return follow(settings, TENANT, document_id, request.submitted_at, timeout_s=240)


def _publish_raw(settings: Settings, values: list[bytes]) -> None:
    """Records no docstreams producer would write: what a careless caller might."""
    producer = Producer(producer_config(settings))
    for value in values:
        producer.produce(topic_name(settings, "ingest"), value=value, key=b"acme/raw")
    assert producer.flush(30) == 0


def _weaviate_count(settings: Settings, document_id: str, version: str | None = None) -> int:
    index = ChunkIndex(settings)
    try:
        return index.count(TENANT, document_id, version)
    finally:
        index.close()


def _has_event(settings: Settings, event_type: str, document_id: str) -> bool:
    return any(
        e["type"] == event_type and e["document_id"] == document_id
        for e in map(orjson.loads, read_topic(settings, "events"))
    )


def _chunk_ids(settings: Settings) -> dict[tuple[str, str], list[str]]:
    """Chunk ids the chunk stage produced, per (document, version), in commit order."""
    ids: dict[tuple[str, str], list[str]] = defaultdict(list)
    for value in read_topic(settings, "chunks"):
        batch = ChunkBatch.from_wire(value)
        ids[(batch.document_id, batch.version)] += [c.id for c in batch.chunks]
    return ids


def test_documents_of_every_type_become_searchable_chunks(
    pipeline: tuple[Settings, psutil.Process], tmp_path: Path
) -> None:
    settings, _ = pipeline
    word = tmp_path / "minutes.docx"
    document = docx.Document()
    document.add_paragraph("Minutes of the harbour board: the dredging contract was approved.")
    document.save(str(word))
    (tmp_path / "notes.md").write_text("# Pilots\n\nA pilot boards every ship over 90 metres.\n")
    (tmp_path / "tides.txt").write_text("High water at Kestrel Bay is at 12:40 today.\n" * 200)
    (tmp_path / "page.html").write_text(
        "<html><body><h1>Fees</h1><p>Mooring costs 30 crowns a night.</p></body></html>"
    )
    sources = {
        "sample": str(SAMPLE),
        "long": str(write_pdf(tmp_path / "long.pdf", numbered_pages(130))),
        "word": str(word),
        "notes": str(tmp_path / "notes.md"),
        "tides": str(tmp_path / "tides.txt"),
        "page": str(tmp_path / "page.html"),
    }
    results = {doc: _submit_and_wait(settings, src, doc) for doc, src in sources.items()}

    produced = _chunk_ids(settings)
    for doc, progress in results.items():
        assert progress.failure is None, (doc, progress.failure)
        assert progress.done and progress.version, doc
        ids = produced[(doc, progress.version)]
        assert ids and len(ids) == len(set(ids)), doc
        assert _weaviate_count(settings, doc, progress.version) == len(ids) == progress.chunks, doc
    assert results["long"].window_count == 7  # 130 pages / 20 per window

    found = CliRunner().invoke(
        app, ["search", "How many blue lanterns are lit on the north pier?", "--tenant", TENANT,
              "--json"], env=as_environment(settings),
    )  # fmt: skip
    assert found.exit_code == 0, found.output
    best = orjson.loads(found.stdout)[0]
    assert best["document_id"] == "sample"
    assert best["page_start"] <= SAMPLE_PAGE <= best["page_end"]
    assert SAMPLE_SENTENCE in " ".join(best["text"].split())


def test_every_app_serves_non_zero_counters_and_lag_falls_to_zero_after_a_run(
    pipeline: tuple[Settings, psutil.Process],
) -> None:
    settings, _ = pipeline
    _submit_and_wait(settings, str(SAMPLE), "metered")
    assert settings.metrics_port is not None
    for offset, stage in enumerate(APPS[:5]):  # `run all` numbers the stages' ports in order
        text = httpx.get(f"http://127.0.0.1:{settings.metrics_port + offset}/metrics").text
        counted = _sample(text, "docstreams_records_in_total", stage)
        assert counted > 0, f"{stage}: no records counted"
        assert _sample(text, "process_resident_memory_bytes") > 0
    tracker = httpx.get(f"{settings.status_api_url}/metrics").text
    assert _sample(tracker, "docstreams_documents_finished_total") > 0

    def lag_rows() -> list[dict[str, Any]]:
        result = CliRunner().invoke(app, ["lag", "--json"], env=as_environment(settings))
        rows: list[dict[str, Any]] = orjson.loads(result.stdout)
        return rows

    wait_for(lambda: all(r["lag"] == 0 for r in lag_rows()), 60)
    assert {r["stage"] for r in lag_rows()} == set(APPS[:5])


def _sample(text: str, name: str, stage: str | None = None) -> float:
    """The sum of a metric's samples (of one stage, if given) in a /metrics page."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        labels_end = line.rfind("}")
        if stage is not None and f'stage="{stage}"' not in line[: labels_end + 1]:
            continue
        total += float(line.rsplit(" ", 1)[1])
    return total


def test_bad_documents_are_dead_lettered_with_their_reason_and_the_next_one_completes(
    pipeline: tuple[Settings, psutil.Process], tmp_path: Path
) -> None:
    settings, _ = pipeline
    encrypted = write_pdf(tmp_path / "locked.pdf", ["secret"], password="pw")
    truncated = tmp_path / "cut.pdf"
    truncated.write_bytes(SAMPLE.read_bytes()[:1500])
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    login_page = tmp_path / "report.pdf"  # an HTML page saved where the PDF was expected
    login_page.write_text("<!DOCTYPE html><html><body>Please sign in</body></html>")
    binary = tmp_path / "tool.bin"
    binary.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(500))
    slow = Behaviour(statuses={"/flaky.pdf": 500}, files={"/slow.pdf": SAMPLE.read_bytes()},
                     trickle={"/slow.pdf"})  # fmt: skip
    _publish_raw(settings, [b"{not json", b'{"type": "DocumentSubmitted", "tenant_id": "acme", '
                            b'"document_id": "no-source", "schema_version": 1}'])  # fmt: skip
    with serving(slow) as base:
        failures = {
            "empty": _submit_and_wait(settings, str(empty), "empty"),
            "login": _submit_and_wait(settings, str(login_page), "login"),
            "err500": _submit_and_wait(settings, f"{base}/flaky.pdf", "err500"),
            "locked": _submit_and_wait(settings, str(encrypted), "locked"),
            "cut": _submit_and_wait(settings, str(truncated), "cut"),
            "gone": _submit_and_wait(settings, f"{base}/gone.pdf", "gone"),
            "metadata": _submit_and_wait(settings, "http://169.254.169.254/latest", "metadata"),
            "binary": _submit_and_wait(settings, str(binary), "binary"),
            "slow": _submit_and_wait(settings, f"{base}/slow.pdf", "slow"),
        }
    after = _submit_and_wait(settings, str(SAMPLE), "after-the-bad-ones")

    reasons = {doc: p.failure.reason for doc, p in failures.items() if p.failure}
    assert "encrypted PDF" in reasons["locked"]
    assert "truncated or corrupt" in reasons["cut"]
    assert "HTTP 404" in reasons["gone"]
    assert "not a public address" in reasons["metadata"]
    assert reasons["empty"] == "empty document (0 bytes)"
    assert "says application/pdf but the bytes are text/html" in reasons["login"]
    assert "HTTP 500" in reasons["err500"]
    assert "binary content" in reasons["binary"]
    assert "under the minimum of 1024 B/s" in reasons["slow"]
    dead = list(map(DeadLetter.from_wire, read_topic(settings, "dlq")))
    letters = {d.document_id: d for d in dead}
    for doc in failures:
        assert letters[doc].stage == "download" and letters[doc].reason == reasons[doc]
    assert any(d.document_id is None and "not JSON" in d.reason for d in dead)
    assert "not a valid DocumentSubmitted" in letters["no-source"].reason
    assert after.done and after.failure is None


def test_unchanged_content_submitted_again_is_not_extracted_or_embedded_again(
    pipeline: tuple[Settings, psutil.Process], tmp_path: Path
) -> None:
    settings, _ = pipeline
    # Content of its own: the sample's texts are in the embedding cache from other tests.
    source = write_pdf(tmp_path / "twice.pdf", numbered_pages(4, f"twice{uuid.uuid4().hex}"))
    first = _submit_and_wait(settings, str(source), "twice")
    second = _submit_and_wait(settings, str(source), "twice")
    assert first.completed and second.completed
    assert first.version == second.version
    assert not first.completed.reused_unchanged and first.completed.tokens_spent > 0
    assert second.completed.reused_unchanged and second.completed.tokens_spent == 0
    ids = _chunk_ids(settings)[("twice", str(first.version))]
    assert ids and len(ids) == len(set(ids))  # chunked (and so embedded) once only
    assert _weaviate_count(settings, "twice") == len(ids) == second.chunks


def test_sigkill_of_the_embed_process_loses_and_duplicates_nothing(
    pipeline: tuple[Settings, psutil.Process], tmp_path: Path
) -> None:
    settings, supervisor = pipeline
    pdf = write_pdf(tmp_path / "big.pdf", numbered_pages(400, topic="ledger"))
    request = submit(settings, str(pdf), TENANT, "killed-embed")

    def embed_process() -> psutil.Process | None:
        return app_process(supervisor, "embed")

    wait_for(lambda: _has_event(settings, "WindowEmbedded", "killed-embed"), timeout_s=120)
    victim = embed_process()
    assert victim is not None
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)

    def restarted() -> bool:  # by `run all`, as a supervisor would
        proc = embed_process()
        return proc is not None and proc.pid != victim.pid

    wait_for(restarted, timeout_s=30)

    progress = follow(settings, TENANT, "killed-embed", request.submitted_at, timeout_s=300)
    assert progress.done and progress.failure is None
    ids = _chunk_ids(settings)[("killed-embed", str(progress.version))]
    assert _weaviate_count(settings, "killed-embed") == len(set(ids)) == len(ids)


def test_a_weaviate_outage_pauses_embedding_and_indexing_and_nothing_is_dead_lettered(
    pipeline: tuple[Settings, psutil.Process], stack_settings: Settings, tmp_path: Path
) -> None:
    settings, _ = pipeline
    weaviate = Stack(stack_settings).weaviate
    weaviate.stop()
    try:
        source = write_pdf(tmp_path / "outage.pdf", numbered_pages(3, f"outage{uuid.uuid4().hex}"))
        request = submit(settings, str(source), TENANT, "during-outage")
        # It reached the embed stage, which cannot ask the embedding cache (in Weaviate) whether
        # these texts were paid for already: it waits, as the index stage would.
        wait_for(lambda: _has_event(settings, "WindowChunked", "during-outage"), timeout_s=120)
        time.sleep(3)
        assert not _has_event(settings, "WindowEmbedded", "during-outage")
    finally:
        weaviate.start()
        weaviate.wait_healthy(120)
    progress = follow(settings, TENANT, "during-outage", request.submitted_at, timeout_s=180)
    assert progress.done and progress.failure is None
    letters = [DeadLetter.from_wire(v) for v in read_topic(settings, "dlq")]
    assert not [d for d in letters if d.document_id == "during-outage"]
    assert _weaviate_count(settings, "during-outage") == progress.chunks > 0


def test_a_rolling_restart_of_every_stage_while_documents_flow_loses_nothing(
    pipeline: tuple[Settings, psutil.Process], tmp_path: Path
) -> None:
    settings, supervisor = pipeline
    requests = [
        submit(settings, str(write_pdf(tmp_path / f"r{i}.pdf", numbered_pages(60, f"roll{i}"))),
               TENANT, f"rolling-{i}")
        for i in range(3)
    ]  # fmt: skip
    for stage in ("download", "extract", "chunk", "embed", "index"):
        (old,) = [p for p in supervisor.children() if p.cmdline()[-1] == stage]
        old.send_signal(signal.SIGTERM)  # graceful: finish or abort the batch, leave the group
        old.wait(60)  # exits within a bounded time (raises TimeoutExpired otherwise)

        def replaced(stage: str = stage, old: psutil.Process = old) -> bool:
            return any(p.cmdline()[-1] == stage and p.pid != old.pid for p in supervisor.children())

        wait_for(replaced, timeout_s=30)
    for request in requests:
        progress = follow(settings, TENANT, request.document_id, request.submitted_at, 240)
        assert progress.done and progress.failure is None, request.document_id
        ids = _chunk_ids(settings)[(request.document_id, str(progress.version))]
        assert _weaviate_count(settings, request.document_id) == len(ids) == len(set(ids)) > 0
