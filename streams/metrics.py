"""Prometheus metrics of every docstreams app, the tracker's included (names follow Prometheus
conventions)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

from streams.messages import (
    DeadLetter,
    Message,
    WindowEmbedded,
    WindowExtracted,
    WindowIndexed,
)

RECORDS_IN = Counter(
    "docstreams_records_in_total",
    "Input records whose batch committed (processed or dead-lettered).",
    ["stage"],
)
MESSAGES_OUT = Counter(
    "docstreams_messages_out_total",
    "Messages a stage produced in committed transactions, by topic and message type.",
    ["stage", "topic", "type"],
)
RECORDS = Counter(
    "docstreams_records_total",
    "Input records handled by a stage, by outcome (ok, retried, dead_lettered).",
    ["stage", "outcome"],
)
TRANSACTIONS = Counter(
    "docstreams_transactions_total",
    "Kafka transactions of a stage, by outcome (committed, aborted).",
    ["stage", "outcome"],
)
BATCH_SECONDS = Histogram(
    "docstreams_batch_seconds",
    "Time to process and commit one batch.",
    ["stage"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
ORPHAN_REJOINS = Counter(
    "docstreams_orphan_rejoins_total",
    "Rejoins a stage made because partitions of its input were owned by no member of its "
    "Stable group (classic protocol; streams/runner/orphans.py).",
    ["stage"],
)
PAUSED = Gauge(
    "docstreams_paused",
    "1 while a stage has paused its partitions (a downstream system pushed back).",
    ["stage"],
)
PAGES = Counter("docstreams_pages_extracted_total", "Pages extracted.", ["stage"])
PAGES_FAILED = Counter("docstreams_pages_failed_total", "Pages whose text failed.", ["stage"])
CHUNKS = Counter("docstreams_chunks_embedded_total", "Chunks embedded.", ["stage"])
TOKENS = Counter("docstreams_embedding_tokens_total", "Tokens sent to the embedder.", ["stage"])
OBJECTS = Counter(
    "docstreams_weaviate_objects_written_total", "Objects Weaviate acknowledged.", ["stage"]
)
PARSER_OVER_MEMORY = Counter(
    "docstreams_parser_over_memory_total",
    "Times a PDF window's parser child went over its memory limit, by what was done next: "
    "fresh (the window read again in a fresh child), page_by_page (over it fresh too: each page "
    "alone), text_only (a page over it alone, read without its drawing; counts pages), "
    "page_lost (a page over it without its drawing too: a page error; counts pages).",
    ["stage", "then"],
)
# What an edit cost: an edited document's unchanged windows and chunks are not processed again.
WINDOWS_EXTRACTED = Counter(
    "docstreams_windows_extracted_total",
    "Windows extracted, by whether their text equals the current version's (unchanged: they go "
    "no further) or not (changed).",
    ["stage", "text"],
)
OBJECTS_REUSED = Counter(
    "docstreams_weaviate_objects_reused_total",
    "Chunks of an edited window whose object the current version already had (not written).",
    ["stage"],
)
OBJECTS_DROPPED = Counter(
    "docstreams_weaviate_objects_dropped_total",
    "Objects of the current version an edited window no longer has (deleted after the switch).",
    ["stage"],
)
# Embedding cost, counted when it happens (a paid request whose batch is then aborted was paid).
EMBED_PROVIDER_TOKENS = Counter(
    "docstreams_embedding_provider_tokens_total",
    "Tokens sent to the embedding model (what the provider bills), at request time.",
)
EMBED_CACHE_TOKENS = Counter(
    "docstreams_embedding_cache_tokens_total",
    "Tokens not sent because the vector came from the embedding cache or an identical input.",
)
EMBED_CACHE_LOOKUPS = Counter(
    "docstreams_embedding_cache_lookups_total",
    "Embedding cache lookups by result (hit, miss, error).",
    ["result"],
)
EMBED_REQUESTS = Counter(
    "docstreams_embedding_requests_total",
    "Requests to the embedding provider by outcome "
    "(ok, throttled, server_error, unreachable, refused, rejected, error).",
    ["outcome"],
)
EMBED_RETRIES = Counter(
    "docstreams_embedding_retries_total", "Embedding requests retried in place after a wait."
)
EMBED_THROTTLED_SECONDS = Counter(
    "docstreams_embedding_throttled_seconds_total",
    "Seconds the embed stage waited on the provider's rate limits (sleeping or paused).",
)
EMBEDDER_REFUSED = Gauge(
    "docstreams_embedder_refused",
    "1 while the provider refuses for quota or credentials (the embed stage is paused).",
)
PROVIDER_REFUSED = Gauge(
    "docstreams_provider_refused",
    "1 while a stage is paused because its provider (embeddings, transcription) refuses for "
    "quota or credentials; set by the runner, wherever the refusal was raised.",
    ["stage"],
)
DEAD_LETTERS = Counter(
    "docstreams_dead_letters_total", "Records dead-lettered, by error class.", ["stage", "error"]
)

# --- the tracker ----------------------------------------------------------------------------
TRACKER_RECORDS = Counter(
    "docstreams_tracker_records_total",
    "Records the tracker folded, by outcome (applied, unchanged, undecodable, error).",
    ["outcome"],
)
CALLBACKS = Counter(
    "docstreams_callbacks_total", "Callbacks by outcome (delivered, failed, skipped).", ["outcome"]
)
DOCUMENTS_FINISHED = Counter(
    "docstreams_documents_finished_total",
    "Documents the tracker finished, by outcome (completed, reused_unchanged, failed, deleted).",
    ["outcome"],
)
OBJECTS_REMOVED = Counter(
    "docstreams_weaviate_objects_removed_total",
    "Objects of earlier versions deleted after a version switch (what the new one no longer has).",
)
TRACKER_RECHECKS = Counter(
    "docstreams_tracker_rechecks_total",
    "Stalled documents folded again from the log, by outcome (unchanged: nothing was missed; "
    "recovered: the re-check found records the live fold had missed).",
    ["outcome"],
)
DOCUMENTS = Gauge(
    "docstreams_documents", "Documents by phase, in this tracker's partitions.", ["phase"]
)
DOCUMENTS_IN_FLIGHT = Gauge(
    "docstreams_documents_in_flight", "Documents submitted and not yet completed or failed."
)
DOCUMENTS_STALLED = Gauge(
    "docstreams_documents_stalled",
    "Documents in flight whose state has not changed for TRACKER_STALLED_AFTER_S.",
)


def counted(message: Message) -> bool:
    """Whether ``count_committed`` reads this message (the runner keeps only these)."""
    return isinstance(message, WindowExtracted | WindowEmbedded | WindowIndexed | DeadLetter)


def count_committed(stage: str, messages: Iterable[Message]) -> None:
    """Domain counters from a committed batch's outputs (so replays never double-count)."""
    for m in messages:
        if isinstance(m, WindowExtracted):
            PAGES.labels(stage).inc(m.items)
            PAGES_FAILED.labels(stage).inc(m.failed_pages)
            WINDOWS_EXTRACTED.labels(stage, "unchanged" if m.unchanged else "changed").inc()
        elif isinstance(m, WindowEmbedded):
            CHUNKS.labels(stage).inc(m.items)
            TOKENS.labels(stage).inc(m.tokens)
        elif isinstance(m, WindowIndexed):
            written = m.items if m.written is None else m.written
            OBJECTS.labels(stage).inc(written)
            OBJECTS_REUSED.labels(stage).inc(m.items - written)
            OBJECTS_DROPPED.labels(stage).inc(m.dropped)
        elif isinstance(m, DeadLetter):
            DEAD_LETTERS.labels(stage, m.error_class).inc()
