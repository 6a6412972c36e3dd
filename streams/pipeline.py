"""The pipeline, declared once.

Every topic, every stage (its input, its outputs, the phase a document is in while it works, the
module that builds it) and the tracker's place in the flow. The apps, the runner, lag, the
tracker's state machine, chaos and `topics create` read these tables; nothing else spells the
shape of the pipeline out again.

    ingest ─► download ─► extract-tasks ─► extract ─► pages ─► chunk ─► chunks ─► embed
                                                                                    │
    Weaviate ◄── index ◄─────────────────────── vectors ◄───────────────────────────┘
    every stage ─► events ─► tracker ─► callbacks ─► tracker (delivery)   every stage ─► dlq
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from streams.messages import (
    ChunkBatch,
    ExtractTask,
    IngestRequest,
    Message,
    PageBatch,
    VectorBatch,
    ingest_from_wire,
)

DAY_MS = 24 * 3600 * 1000
MIB = 2**20
# Work topics: the most replicas a work stage can usefully run.
WORK_PARTITIONS = 12
# Document-keyed topics (ingest, events, callbacks, the tracker's changelog): co-partitioned, so
# one tracker replica owns a document's request, events and state.
DOCUMENT_PARTITIONS = 6


# --- topics ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class TopicSpec:
    key: str  # name without the configured prefix
    partitions: int
    retention_ms: int  # -1: keep forever
    max_message_bytes: int
    cleanup_policy: Literal["delete", "compact"]
    purpose: str

    def config(self) -> dict[str, str]:
        return {
            "retention.ms": str(self.retention_ms),
            "max.message.bytes": str(self.max_message_bytes),
            "cleanup.policy": self.cleanup_policy,
        }


TRACKER_APP = "tracker"  # faust app id = topic prefix + this
TRACKER_TABLE = "document-states"
TRACKER_CHANGELOG = f"{TRACKER_APP}-{TRACKER_TABLE}-changelog"
# Earlier releases wrote the table here with JSON-encoded keys on the wrong partitions
# (streams/tracker/legacy.py imports it once and deletes it).
LEGACY_TRACKER_CHANGELOG = f"{TRACKER_APP}-documents-changelog"

# fmt: off
TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec("ingest", partitions=DOCUMENT_PARTITIONS, retention_ms=7 * DAY_MS,
              max_message_bytes=MIB, cleanup_policy="delete",
              purpose="DocumentSubmitted and delete requests, keyed by document_id"),
    TopicSpec("extract-tasks", partitions=WORK_PARTITIONS, retention_ms=7 * DAY_MS,
              max_message_bytes=MIB, cleanup_policy="delete",
              purpose="one ExtractTask per page or time window"),
    TopicSpec("pages", partitions=WORK_PARTITIONS, retention_ms=3 * DAY_MS,
              max_message_bytes=8 * MIB, cleanup_policy="delete",
              purpose="PageBatch: the text of one window"),
    TopicSpec("chunks", partitions=WORK_PARTITIONS, retention_ms=3 * DAY_MS,
              max_message_bytes=8 * MIB, cleanup_policy="delete",
              purpose="ChunkBatch: the chunks of one window"),
    TopicSpec("vectors", partitions=WORK_PARTITIONS, retention_ms=3 * DAY_MS,
              max_message_bytes=8 * MIB, cleanup_policy="delete",
              purpose="VectorBatch: chunks with their embeddings"),
    TopicSpec("events", partitions=DOCUMENT_PARTITIONS, retention_ms=14 * DAY_MS,
              max_message_bytes=MIB, cleanup_policy="delete",
              purpose="stage progress events, keyed by document_id, folded by the tracker"),
    TopicSpec("callbacks", partitions=DOCUMENT_PARTITIONS, retention_ms=7 * DAY_MS,
              max_message_bytes=MIB, cleanup_policy="delete",
              purpose="CallbackDue: signed completion/failure callbacks the tracker delivers"),
    # The tracker's faust table changelog (faust names it <app id>-<table>-changelog): declared
    # here so it is compacted and co-partitioned with ingest/events before the tracker starts.
    TopicSpec(TRACKER_CHANGELOG, partitions=DOCUMENT_PARTITIONS, retention_ms=-1,
              max_message_bytes=4 * MIB, cleanup_policy="compact",
              purpose="document state per tenant/document (tracker table changelog)"),
    TopicSpec("dlq", partitions=3, retention_ms=30 * DAY_MS, max_message_bytes=16 * MIB,
              cleanup_policy="delete",
              purpose="DeadLetter: input a stage could not process, with stage and reason"),
)
# fmt: on
TOPIC_SPECS: dict[str, TopicSpec] = {t.key: t for t in TOPICS}


# --- stages ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScalePolicy:
    """How a stage's replica count follows its consumer lag: its KEDA ScaledObject in k8s/base
    (tests/test_deploy_files.py holds the two equal) and `run all --autoscale`."""

    lag_threshold: int  # records of lag one replica is meant to carry (lagThreshold)
    max_replicas: int  # maxReplicaCount (no more than the input topic's partitions are used)
    min_replicas: int = 1  # minReplicaCount
    activation_lag_threshold: int = 0  # active (scaled from zero) above this lag
    polling_interval_s: float = 15.0  # pollingInterval
    cooldown_s: float = 300.0  # cooldownPeriod: calm time before scaling to zero (min 0 only)
    # The HPA's scaleDown behaviour: the highest recommendation of the window is followed, and
    # at most `scale_down_pods` replicas go per `scale_down_period_s` (each is a rebalance).
    scale_down_window_s: float = 300.0
    scale_down_pods: int = 1
    scale_down_period_s: float = 60.0


@dataclass(frozen=True)
class StageSpec:
    """Where a stage sits in the flow."""

    name: str  # also its consumer group (after the topic prefix) and its app name
    module: str  # has make_stage(settings) -> Stage; imported only by the process that runs it
    input: object  # the message type (or union) it consumes: documentation and typing
    input_topic: str
    decode: Callable[[bytes | None], Message]  # input record bytes -> message
    outputs: tuple[str, ...]  # the topics its handler writes (dead letters go to dlq besides)
    phase: str  # the document's phase while this stage has windows left (status.Phase)
    per_window: bool  # it reports each window done (WindowExtracted, ...)
    scaling: ScalePolicy


# fmt: off
STAGES: tuple[StageSpec, ...] = (
    StageSpec("download", "streams.download", IngestRequest, "ingest", ingest_from_wire,
              outputs=("extract-tasks", "events"), phase="queued", per_window=False,
              scaling=ScalePolicy(lag_threshold=4, max_replicas=6)),
    StageSpec("extract", "streams.extract", ExtractTask, "extract-tasks", ExtractTask.from_wire,
              outputs=("pages", "events"), phase="extracting", per_window=True,
              scaling=ScalePolicy(lag_threshold=24, max_replicas=12)),
    StageSpec("chunk", "streams.chunk", PageBatch, "pages", PageBatch.from_wire,
              outputs=("chunks", "events"), phase="chunking", per_window=True,
              scaling=ScalePolicy(lag_threshold=48, max_replicas=12)),
    StageSpec("embed", "streams.embed", ChunkBatch, "chunks", ChunkBatch.from_wire,
              outputs=("vectors", "events"), phase="embedding", per_window=True,
              scaling=ScalePolicy(lag_threshold=12, max_replicas=12)),
    StageSpec("index", "streams.index", VectorBatch, "vectors", VectorBatch.from_wire,
              outputs=("events",), phase="indexing", per_window=True,
              scaling=ScalePolicy(lag_threshold=48, max_replicas=12)),
)
# fmt: on
STAGE_SPECS: dict[str, StageSpec] = {s.name: s for s in STAGES}
WINDOW_STAGES: tuple[StageSpec, ...] = tuple(s for s in STAGES if s.per_window)
# The tracker folds requests and events, writes events (completion) and callbacks.
TRACKER_INPUTS = ("ingest", "events")
TRACKER_OUTPUTS = ("events", "callbacks")
APPS: tuple[str, ...] = (*(s.name for s in STAGES), TRACKER_APP)


def stage_of_topic(topic_key: str) -> str:
    """The app that consumes a topic (the tracker for events and callbacks)."""
    for spec in STAGES:
        if spec.input_topic == topic_key:
            return spec.name
    return TRACKER_APP


# --- what a stage module builds -------------------------------------------------------------
In = TypeVar("In", bound=Message)


@dataclass(frozen=True)
class Stage(Generic[In]):
    """A record stage: ``handle`` turns one input message into output messages. Plain code: it
    knows nothing of offsets, transactions or retries (streams/runner/ does)."""

    spec: StageSpec
    handle: Callable[[In], Iterable[Message]]
    # Releases what the stage holds outside itself (Weaviate and HTTP clients, parser
    # children); the runner calls it once, after it has left the group.
    close: Callable[[], None] = lambda: None

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class BatchStage(Stage[In]):
    """A stage with work cheaper done for a whole batch at once: ``prepare`` sees the batch's
    decoded messages first (the embed stage fills its requests across windows), then ``handle``
    runs message by message as for a record stage. DownstreamUnavailable from ``prepare``
    pauses like one from ``handle``; any other error there is classified message by message."""

    prepare: Callable[[list[In]], None] = lambda _: None
    # After a batch's first records, how long to wait for more (fuller requests).
    gather_wait_s: float | None = None
