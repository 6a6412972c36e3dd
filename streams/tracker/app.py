"""The faust app: its broker connection, topics and table, and what runs on it."""

from __future__ import annotations

import ssl
import tempfile
from pathlib import Path
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from streams.pipeline import (
    DOCUMENT_PARTITIONS,
    TRACKER_APP,
    TRACKER_INPUTS,
    TRACKER_OUTPUTS,
    TRACKER_TABLE,
)
from streams.settings import Settings
from streams.topics import topic_name
from streams.tracker.agents import start_agents
from streams.tracker.api import start_api
from streams.tracker.documents import Documents
from streams.tracker.effects import Effects
from streams.tracker.legacy import import_legacy_states
from streams.tracker.sweeps import start_sweeps


class _ReadCommittedThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._isolation_level = "read_committed"  # aborted stage outputs never count
        return consumer


class _ReadCommittedConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> Any:
        return _ReadCommittedThread(self, loop=self.loop, beacon=self.beacon)


class ReadCommittedTransport(faust_aiokafka.Transport):
    """faust's aiokafka transport, reading only committed records (URL scheme ``docstreams``,
    registered as a ``faust.transports`` entry point; faust sets read_committed only in its
    exactly_once mode)."""

    Consumer = _ReadCommittedConsumer


class DocumentTable(faust.Table[str, bytes]):
    """faust's table, with ``tenant/document`` keys written as their plain UTF-8 bytes.

    faust encodes a ``str`` key as JSON ('"t/d"', quotes included) and the producer hashes the
    encoded key: the state would sit on another partition than its document's records, and a
    replica taking those partitions over would not recover it."""

    def _serializer_from_type(self, typ: Any) -> Any:
        return "raw" if typ is str else super()._serializer_from_type(typ)


def broker_credentials(settings: Settings) -> faust.SASLCredentials | faust.SSLCredentials | None:
    """The stages' Kafka security settings, for aiokafka (the tracker's client)."""
    protocol = settings.kafka_security_protocol
    context = None
    if protocol.endswith("SSL"):
        cafile = str(settings.kafka_ssl_ca_location) if settings.kafka_ssl_ca_location else None
        context = ssl.create_default_context(cafile=cafile)
    if protocol.startswith("SASL"):
        password = settings.kafka_sasl_password
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=password.get_secret_value() if password else None,
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    return faust.SSLCredentials(context) if context else None


def _faust_app(settings: Settings) -> faust.App:
    servers = [s.strip() for s in settings.bootstrap_servers.split(",") if s.strip()]
    return faust.App(
        f"{settings.topic_prefix}{TRACKER_APP}",
        broker=[f"docstreams://{s}" for s in servers],
        store="memory://",  # rebuilt from the compacted changelog on start
        # faust still makes a data dir (default: ./<app id>-data in the working directory);
        # with a memory store it stays empty, so a temp dir will do.
        datadir=str(Path(tempfile.gettempdir()) / f"docstreams-{settings.topic_prefix}tracker"),
        topic_partitions=DOCUMENT_PARTITIONS,
        topic_replication_factor=1,
        table_standby_replicas=0,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        consumer_group_instance_id=settings.instance_id,  # static membership: fast restarts
        broker_credentials=broker_credentials(settings),
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        producer_max_request_size=4 * 2**20,
        web_bind=settings.tracker_host,
        web_port=settings.tracker_port,
        web_host=settings.tracker_advertised_host or settings.tracker_host,
        web_stats_enabled=False,
        web_graph_enabled=False,
        web_tables_enabled=False,
        web_router_enabled=False,
        web_metrics_enabled=False,
        web_in_thread=False,
    )


def build_app(settings: Settings, effects: Effects | None = None) -> faust.App:
    app = _faust_app(settings)
    sources = app.topic(
        *(topic_name(settings, key) for key in TRACKER_INPUTS), key_type=bytes, value_type=bytes
    )
    outputs = {
        key: app.topic(topic_name(settings, key), key_type=bytes, value_type=bytes)
        for key in TRACKER_OUTPUTS
    }
    # use_partitioner: a write goes to the murmur2 partition of its key, which is the partition
    # of the document's records (every docstreams producer uses murmur2), so the table stays
    # co-partitioned, and the retention sweep may write outside an event.
    table = app.tables.add(DocumentTable(app, name=TRACKER_TABLE, beacon=app.tables.beacon,
                                         partitions=DOCUMENT_PARTITIONS, key_type=str,
                                         value_type=bytes, use_partitioner=True))  # fmt: skip
    documents = Documents(app, table, outputs, effects or Effects(settings))
    start_agents(app, documents, settings, sources)
    start_sweeps(app, documents, settings)
    start_api(app, documents, settings)
    return app


def run_tracker(settings: Settings) -> None:
    from faust.worker import Worker

    import_legacy_states(settings)  # before faust recovers the table from its changelog
    effects = Effects(settings)
    try:
        Worker(build_app(settings, effects), loglevel="INFO", quiet=True).execute_from_commandline()
    finally:  # after the worker has stopped (an effect still running in an executor thread
        effects.close()  # then fails, and is redone after a restart: effects are idempotent)
