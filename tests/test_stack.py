"""The local stack: real Kafka transactions, real Weaviate vectors, and its lifecycle commands."""

from __future__ import annotations

import logging
import shlex
import socket
import time
import uuid
from pathlib import Path

import orjson
import psutil
import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import NewTopic
from typer.testing import CliRunner
from weaviate.classes.config import Configure, DataType, Property
from weaviate.classes.data import DataObject
from weaviate.classes.query import Filter

from docstreams_dev.cli import EXIT_NOT_HEALTHY, stack_app
from docstreams_dev.errors import StackError
from docstreams_dev.stack import Stack
from docstreams_dev.stack.ports import private_stack_settings
from streams.kafka_clients import admin_client, base_config
from streams.settings import Settings, as_environment
from streams.weaviate_clients import connect_weaviate
from tests.apps_helpers import free_port_block
from tests.kafka_helpers import read_topic

pytestmark = pytest.mark.stack
runner = CliRunner()


def _new_topic(settings: Settings, partitions: int = 1) -> str:
    topic = f"{settings.topic_prefix}scratch"
    admin = admin_client(settings)
    fut = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    fut[topic].result(timeout=30)
    return topic


def _next_offset(msg: Message) -> int:
    offset = msg.offset()
    assert offset is not None
    return offset + 1


def test_read_committed_consumer_sees_committed_records_and_never_aborted_ones(
    settings: Settings,
) -> None:
    topic = _new_topic(settings)
    producer = Producer({**base_config(settings), "transactional.id": f"t-{uuid.uuid4()}"})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"a1")
    producer.produce(topic, value=b"a2")
    producer.commit_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"aborted")
    producer.flush(30)  # the aborted record is really in the log, only hidden by the abort marker
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"b1")
    producer.commit_transaction(30)

    assert read_topic(settings, "scratch", "read_committed") == [b"a1", b"a2", b"b1"]
    # The control: read_uncommitted does see the aborted record, so the test above can fail.
    assert b"aborted" in read_topic(settings, "scratch", "read_uncommitted")


def test_offsets_sent_to_a_transaction_commit_only_with_it(settings: Settings) -> None:
    """The checkpoint mechanism every stage relies on: offsets and outputs commit together."""
    source, sink = _new_topic(settings), f"{settings.topic_prefix}sink"
    admin = admin_client(settings)
    admin.create_topics([NewTopic(sink, 1, 1)])[sink].result(timeout=30)
    seed = Producer(base_config(settings))
    for i in range(4):
        seed.produce(source, value=str(i).encode())
    seed.flush(30)

    group = f"g-{uuid.uuid4().hex[:8]}"
    consumer = Consumer(
        {
            **base_config(settings),
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    consumer.assign([TopicPartition(source, 0, 0)])
    producer = Producer({**base_config(settings), "transactional.id": f"t-{uuid.uuid4()}"})
    producer.init_transactions(30)
    deadline = time.monotonic() + 30
    msgs: list[Message] = []
    while len(msgs) < 4 and time.monotonic() < deadline:
        msgs += [m for m in consumer.consume(4 - len(msgs), 1.0) if not m.error()]
    assert len(msgs) == 4

    def process(upto: int, commit: bool) -> None:
        producer.begin_transaction()
        for m in msgs[:upto]:
            producer.produce(sink, value=m.value())
        producer.send_offsets_to_transaction(
            [TopicPartition(source, 0, _next_offset(msgs[upto - 1]))],
            consumer.consumer_group_metadata(),
        )
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)

    process(4, commit=False)
    committed = consumer.committed([TopicPartition(source, 0)], timeout=10)[0].offset
    assert committed < 0  # aborted: no checkpoint was taken
    process(2, commit=True)
    committed = consumer.committed([TopicPartition(source, 0)], timeout=10)[0].offset
    assert committed == _next_offset(msgs[1])
    consumer.close()
    assert read_topic(settings, "sink", "read_committed") == [b"0", b"1"]


def test_weaviate_collection_with_self_provided_vectors_is_queried_back(
    settings: Settings,
) -> None:
    name = f"Chunk{uuid.uuid4().hex[:10]}"
    with connect_weaviate(settings) as client:
        collection = client.collections.create(
            name,
            vector_config=Configure.Vectors.self_provided(),
            properties=[
                Property(name="text", data_type=DataType.TEXT),
                Property(name="document_id", data_type=DataType.TEXT),
            ],
        )
        try:
            ids = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"doc/{i}")) for i in range(3)]
            objects = [
                DataObject(
                    properties={"text": "kafka", "document_id": "d1"},
                    vector=[1.0, 0.0],
                    uuid=ids[0],
                ),
                DataObject(
                    properties={"text": "weaviate", "document_id": "d1"},
                    vector=[0.0, 1.0],
                    uuid=ids[1],
                ),
                DataObject(
                    properties={"text": "other", "document_id": "d2"},
                    vector=[0.7, 0.7],
                    uuid=ids[2],
                ),
            ]
            assert not collection.data.insert_many(objects).has_errors
            # Re-putting the same ids replaces, never duplicates: the index stage relies on it.
            assert not collection.data.insert_many(objects).has_errors

            hit = collection.query.near_vector([0.1, 0.95], limit=1, include_vector=True).objects[0]
            assert hit.properties["text"] == "weaviate"
            assert str(hit.uuid) == ids[1]
            assert hit.vector["default"] == pytest.approx([0.0, 1.0])
            total = collection.aggregate.over_all(total_count=True).total_count
            only_d1 = collection.aggregate.over_all(
                filters=Filter.by_property("document_id").equal("d1"), total_count=True
            ).total_count
            assert (total, only_d1) == (3, 2)
        finally:
            client.collections.delete(name)


def test_stack_status_json_reports_each_service_healthy_with_pid_and_ports(
    settings: Settings,
) -> None:
    result = runner.invoke(stack_app, ["status", "--json"], env=as_environment(settings))
    assert result.exit_code == 0, result.output
    services = {s["name"]: s for s in orjson.loads(result.stdout)}
    assert set(services) == {"kafka", "weaviate"}
    assert services["kafka"]["ports"]["broker"] == settings.kafka_port
    assert services["weaviate"]["ports"]["http"] == settings.weaviate_http_port
    for s in services.values():
        assert s["healthy"] and s["running"] and s["installed"]
        assert isinstance(s["pid"], int) and s["rss_mb"] > 0


def test_the_local_broker_runs_with_the_configured_jvm_options(settings: Settings) -> None:
    result = runner.invoke(stack_app, ["status", "--json"], env=as_environment(settings))
    kafka = next(s for s in orjson.loads(result.stdout) if s["name"] == "kafka")
    argv = psutil.Process(kafka["pid"]).cmdline()
    wanted = shlex.split(settings.kafka_jvm_options)
    assert wanted == ["-XX:TieredStopAtLevel=1"]  # the default: C1 only
    assert all(option in argv for option in wanted), argv


def test_stack_up_on_a_running_stack_starts_nothing(settings: Settings) -> None:
    reports = Stack(settings).up()
    assert [(r.service, r.started) for r in reports] == [("kafka", False), ("weaviate", False)]


def test_stack_check_command_round_trips_both_services(settings: Settings) -> None:
    result = runner.invoke(stack_app, ["check"], env=as_environment(settings))
    assert result.exit_code == 0, result.output
    assert "read_committed saw committed-1, committed-2" in result.output
    assert "nearest to (0.1, 0.9, 0) is 'east'" in result.output


def test_stack_down_and_up_again_keeps_data_and_reports_status(tmp_path: Path) -> None:
    settings = private_stack_settings(tmp_path / "state", topic_prefix="persist.")
    env = as_environment(settings)
    stack = Stack(settings)
    try:
        assert all(r.started for r in stack.up())
        topic = _new_topic(settings)
        assert runner.invoke(stack_app, ["down"], env=env).exit_code == 0
        down = runner.invoke(stack_app, ["status", "--json"], env=env)
        assert down.exit_code == EXIT_NOT_HEALTHY
        assert not any(s["running"] for s in orjson.loads(down.stdout))

        assert runner.invoke(stack_app, ["up"], env=env).exit_code == 0
        assert topic in admin_client(settings).list_topics(timeout=10).topics
    finally:
        stack.down(purge=True)
    assert not (tmp_path / "state" / "kafka").exists()


def test_a_port_already_taken_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    settings = private_stack_settings(tmp_path / "state")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", settings.kafka_port))
        squatter.listen()
        with pytest.raises(StackError, match=rf"port {settings.kafka_port} is already in use"):
            Stack(settings).kafka.start()


def test_the_chunks_collection_is_created_with_the_configured_hnsw_build_parameters(
    settings: Settings,
) -> None:
    from streams.adapters.weaviate_store import ChunkIndex

    configured = settings.model_copy(
        update={
            "weaviate_collection": f"Hnsw{uuid.uuid4().hex[:10]}",
            "weaviate_hnsw_max_connections": 12,
            "weaviate_hnsw_ef_construction": 48,
        }
    )
    index = ChunkIndex(configured)
    try:
        index.ensure_collection()
        config = index.client.collections.use(index.name).config.get()
        (vectors,) = (config.vector_config or {}).values()
        hnsw = vectors.vector_index_config
        assert (hnsw.max_connections, hnsw.ef_construction) == (12, 48)  # type: ignore[union-attr]
        index.client.collections.delete([index.name, index.registry_name])
    finally:
        index.close()


def test_a_window_larger_than_the_insert_size_is_written_whole_in_slices(
    settings: Settings,
) -> None:
    import numpy as np

    from streams.adapters.weaviate_store import ChunkIndex, CurrentVersion
    from streams.messages import EmbeddedChunk, VectorBatch, encode_vector

    sliced = settings.model_copy(
        update={"weaviate_collection": f"Slices{uuid.uuid4().hex[:10]}",
                "weaviate_insert_objects": 2}
    )  # fmt: skip
    vectors = np.eye(5, 8, dtype=np.float32)
    chunks = [
        EmbeddedChunk(id=str(uuid.uuid4()), index=i, text=f"mooring {i}", page_start=1,
                      page_end=1, tokens=2, vector=encode_vector(v))
        for i, v in enumerate(vectors)
    ]  # fmt: skip
    batch = VectorBatch(tenant_id="acme", document_id="moorings", version="b" * 64, window=0,
                        window_count=1, content_type="text/plain", model="m", dimensions=8,
                        chunks=chunks)  # fmt: skip
    index = ChunkIndex(sliced)
    try:
        assert index.upsert(batch) == 5
        assert index.count("acme", "moorings") == 5
        index.make_current("acme", "moorings", CurrentVersion("b" * 64, 5))
        (hit,) = index.search("acme", vectors[4].tolist(), limit=1)
        assert hit.text == "mooring 4"
        index.client.collections.delete([index.name, index.registry_name])
    finally:
        index.close()


def test_adapters_prepared_at_start_make_their_collections_or_wait_for_weaviate(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    from streams.adapters.embedding_cache import WeaviateEmbeddingCache
    from streams.adapters.weaviate_store import ChunkIndex

    name = f"Prep{uuid.uuid4().hex[:10]}"
    named = settings.model_copy(update={"weaviate_collection": name})
    index, cache = ChunkIndex(named), WeaviateEmbeddingCache(named, 384)
    try:
        index.prepare()
        cache.prepare()
        made = [index.name, index.registry_name, cache.name]
        assert all(index.client.collections.exists(n) for n in made)
        index.client.collections.delete(made)
    finally:
        index.close()
        cache.close()
    # Nothing listens there: a warning, no exception; the stage still starts.
    port = free_port_block(2)
    down = named.model_copy(update={"weaviate_http_port": port, "weaviate_grpc_port": port + 1})
    unreachable = ChunkIndex(down)
    with caplog.at_level(logging.WARNING):
        unreachable.prepare()
    assert "weaviate not ready at start" in caplog.text
    unreachable.close()
