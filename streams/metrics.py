"""Prometheus metrics shared by every docstreams app (names follow Prometheus conventions)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
PAUSED = Gauge(
    "docstreams_paused",
    "1 while a stage has paused its partitions (a downstream system pushed back).",
    ["stage"],
)
