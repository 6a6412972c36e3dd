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
from streams.cli import app
from streams.kafka_clients import producer_config
from streams.messages import ChunkBatch, DeadLetter
from streams.pipeline import APPS
from streams.producer import submit
from streams.progress import follow
from streams.settings import Settings, as_environment
from streams.topics import topic_name
from tests.apps_helpers import (
    TENANT,
    app_process,
    app_url,
    embedded_chunk_ids,
    free_port_block,
    indexed_chunk_ids,
    indexed_count,
    isolated,
    running_apps,
    submit_and_wait,
    vector_batches,
)
from tests.kafka_helpers import read_topic, transaction_in_flight, wait_for
from tests.pdfs import SAMPLE, SAMPLE_PAGE, SAMPLE_SENTENCE, numbered_pages, write_pdf

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def pipeline(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, psutil.Process]]:
    settings = isolated(
        stack_settings,
        tmp_path_factory,
        "e2e",
        fetch_allowlist=["127.0.0.1/32"],
        fetch_attempts=2,
        pages_per_window=20,
        batch_max_wait_s=0.2,
        metrics_port=free_port_block(len(APPS)),
    )
    with running_apps(settings) as supervisor:
        yield settings, supervisor


def _publish_raw(settings: Settings, values: list[bytes]) -> None:
    """Records no docstreams producer would write: what a careless caller might."""
    producer = Producer(producer_config(settings))
    for value in values:
        producer.produce(topic_name(settings, "ingest"), value=value, key=b"acme/raw")
    assert producer.flush(30) == 0


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
    results = {doc: submit_and_wait(settings, src, doc) for doc, src in sources.items()}

    produced = _chunk_ids(settings)
    for doc, progress in results.items():
        assert progress.failure is None, (doc, progress.failure)
        assert progress.done and progress.version, doc
        ids = produced[(doc, progress.version)]
        assert ids and len(ids) == len(set(ids)), doc
        assert len(ids) == progress.chunks, doc
        assert sorted(indexed_chunk_ids(settings, doc, progress.version)) == sorted(ids), doc
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
    submit_and_wait(settings, str(SAMPLE), "metered")
    for stage in APPS[:5]:
        text = httpx.get(f"{app_url(settings, stage)}/metrics").text
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
            "empty": submit_and_wait(settings, str(empty), "empty"),
            "login": submit_and_wait(settings, str(login_page), "login"),
            "err500": submit_and_wait(settings, f"{base}/flaky.pdf", "err500"),
            "locked": submit_and_wait(settings, str(encrypted), "locked"),
            "cut": submit_and_wait(settings, str(truncated), "cut"),
            "gone": submit_and_wait(settings, f"{base}/gone.pdf", "gone"),
            "metadata": submit_and_wait(settings, "http://169.254.169.254/latest", "metadata"),
            "binary": submit_and_wait(settings, str(binary), "binary"),
            "slow": submit_and_wait(settings, f"{base}/slow.pdf", "slow"),
        }
    after = submit_and_wait(settings, str(SAMPLE), "after-the-bad-ones")

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
    first = submit_and_wait(settings, str(source), "twice")
    second = submit_and_wait(settings, str(source), "twice")
    assert first.completed and second.completed
    assert first.version == second.version
    assert not first.completed.reused_unchanged and first.completed.tokens_spent > 0
    assert second.completed.reused_unchanged and second.completed.tokens_spent == 0
    ids = _chunk_ids(settings)[("twice", str(first.version))]
    assert ids and len(ids) == len(set(ids))  # chunked (and so embedded) once only
    assert indexed_count(settings, "twice") == len(ids) == second.chunks


def test_sigkill_of_the_embed_process_loses_and_duplicates_nothing(
    pipeline: tuple[Settings, psutil.Process], tmp_path: Path
) -> None:
    settings, supervisor = pipeline
    pdf = write_pdf(tmp_path / "big.pdf", numbered_pages(400, topic="ledger"))
    request = submit(settings, str(pdf), TENANT, "killed-embed")
    victim = app_process(supervisor, "embed")
    assert victim is not None
    killed_batch = _stop_inside_a_transaction(settings, victim, "killed-embed")
    victim.send_signal(signal.SIGKILL)  # stopped, it cannot commit: the kill lands mid-batch
    victim.wait(10)

    def restarted() -> bool:  # by `run all`, as a supervisor would
        proc = app_process(supervisor, "embed")
        return proc is not None and proc.pid != victim.pid

    wait_for(restarted, timeout_s=30)

    progress = follow(settings, TENANT, "killed-embed", request.submitted_at, timeout_s=300)
    assert progress.done and progress.failure is None
    version = str(progress.version)
    chunked = _chunk_ids(settings)[("killed-embed", version)]
    embedded = embedded_chunk_ids(settings, "killed-embed", version)
    assert len(embedded) == len(set(embedded)), "a chunk's vector was committed twice"
    assert sorted(embedded) == sorted(chunked) and len(chunked) == progress.chunks
    indexed = indexed_chunk_ids(settings, "killed-embed", version)
    assert sorted(indexed) == sorted(embedded)
    # The killed process's batch never committed (its restarted successor fenced it), and its
    # chunks were embedded again by a later batch.
    written = vector_batches(settings, "killed-embed", "read_uncommitted")
    killed = {c.id for batch, vectors in written if batch == killed_batch for c in vectors.chunks}
    assert killed, "the killed batch's vectors are not in the log"
    committed = {batch for batch, _ in vector_batches(settings, "killed-embed")}
    assert killed_batch not in committed
    assert killed <= set(embedded)


def _stop_inside_a_transaction(settings: Settings, embed: psutil.Process, document_id: str) -> str:
    """Stop (SIGSTOP) the embed process while its batch's vectors of the document are in the log
    but not committed, and return that batch; retried until it is caught so, as a commit may
    finish between seeing the open transaction and the stop."""
    in_flight = transaction_in_flight(settings, "vectors")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if not in_flight():
            continue
        embed.suspend()
        written = {b for b, _ in vector_batches(settings, document_id, "read_uncommitted")}
        committed = {b for b, _ in vector_batches(settings, document_id)}
        # Still open after both reads while stopped: not a commit the broker was finishing.
        open_batches = sorted(written - committed - {None}, key=_batch_order)
        if open_batches and in_flight():
            return str(open_batches[-1])
        embed.resume()
    raise AssertionError(f"never saw the embed process inside a transaction of {document_id}")


def _batch_order(batch: str | None) -> tuple[int, int]:
    """A runner batch id's (process start, sequence): the last is the one written last."""
    _, started, sequence = str(batch).rsplit("/", 2)
    return int(started), int(sequence)


def test_a_weaviate_outage_pauses_embedding_and_indexing_and_nothing_is_dead_lettered(
    pipeline: tuple[Settings, psutil.Process], stack_settings: Settings, tmp_path: Path
) -> None:
    settings, _ = pipeline
    weaviate = Stack(stack_settings).weaviate
    weaviate.stop()
    try:
        source = write_pdf(tmp_path / "outage.pdf", numbered_pages(3, f"outage{uuid.uuid4().hex}"))
        request = submit(settings, str(source), TENANT, "during-outage")
        # It reaches the embed stage, which cannot ask the embedding cache (in Weaviate) whether
        # these texts were paid for already: it pauses and waits, as the index stage would.
        wait_for(lambda: "embedding cache unreachable" in _paused_because(settings, "embed"), 120)
        assert _has_event(settings, "WindowChunked", "during-outage")
        assert not _has_event(settings, "WindowEmbedded", "during-outage")
    finally:
        weaviate.start()
        weaviate.wait_healthy(120)
    progress = follow(settings, TENANT, "during-outage", request.submitted_at, timeout_s=180)
    assert progress.done and progress.failure is None
    letters = [DeadLetter.from_wire(v) for v in read_topic(settings, "dlq")]
    assert not [d for d in letters if d.document_id == "during-outage"]
    assert indexed_count(settings, "during-outage") == progress.chunks > 0


def _paused_because(settings: Settings, name: str) -> str:
    """Why an app says it is not ready and paused ("" if it is not paused)."""
    ready = httpx.get(f"{app_url(settings, name)}/readyz")
    reason: str | None = ready.json()["paused_because"]
    assert reason is None or ready.status_code == 503, "paused but ready"
    return reason or ""


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
        assert ids and len(ids) == len(set(ids)), request.document_id
        assert sorted(indexed_chunk_ids(settings, request.document_id)) == sorted(ids)
