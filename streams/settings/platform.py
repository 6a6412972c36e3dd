"""Settings sections of the platform: every app, Kafka, Weaviate, the tracker, the local stack."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

# Pinned versions of the local stack. Kafka 4.1 is the newest line whose log4j2 binding (2.24.3)
# resolves with it from Maven Central; Weaviate v1.39.3 is the newest v1.39 tag whose whole module
# graph the Go module proxy serves here (v1.39.4+ need github.com/weaviate/sroar >= v0.0.17,
# which the proxy refuses).
DEFAULT_KAFKA_VERSION = "4.1.2"
DEFAULT_WEAVIATE_VERSION = "v1.39.3"

# Ports away from the usual 9092/8080/50051, so a developer's other services don't clash, and
# below Linux's ephemeral range (32768-60999), so an outgoing connection never holds one.
DEFAULT_KAFKA_PORT = 19092
DEFAULT_KAFKA_CONTROLLER_PORT = 19093
DEFAULT_WEAVIATE_HTTP_PORT = 18080
DEFAULT_WEAVIATE_GRPC_PORT = 18051
DEFAULT_WEAVIATE_GOSSIP_PORT = 18946
DEFAULT_WEAVIATE_DATA_PORT = 18947
DEFAULT_WEAVIATE_RAFT_PORT = 18300

Port = Annotated[int, Field(ge=1, le=65535)]
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "docstreams"


class Section(BaseModel):
    """A group of settings; Settings combines them all."""

    model_config = ConfigDict(frozen=True)


class GeneralSettings(Section):
    """Every app: logging, secrets, the shared blob store."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="WARNING", description="Log level of every app (`-v` on the command line: INFO)."
    )
    secrets_dir: Path | None = Field(
        default=None,
        description="Directory of secret files, one per setting, named like its variable (e.g. "
        "DOCSTREAMS_OPENAI_API_KEY): a mounted Secret; values are never logged.",
    )
    cache_dir: Path = Field(
        default=DEFAULT_CACHE_DIR,
        description="Cache outside the repo: the local stack's Kafka jars and Weaviate binary, "
        "and the local embedder's derived model file (models/).",
    )
    blob_dir: Path = Field(
        default=Path.home() / ".local" / "share" / "docstreams" / "blobs",
        description="Blob store root: downloaded documents, one file per tenant/document/sha256.",
    )


class KafkaSettings(Section):
    """Kafka: the broker, its security, the topic names."""

    kafka_bootstrap_servers: str | None = Field(
        default=None,
        description="Kafka bootstrap servers; default: the local broker, 127.0.0.1:KAFKA_PORT.",
    )
    kafka_port: Port = Field(default=DEFAULT_KAFKA_PORT, description="Local broker port.")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="Kafka security.protocol (every client, the tracker too)."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="SCRAM-SHA-512", description="SASL mechanism for SASL_* protocols."
    )
    kafka_sasl_username: str | None = Field(default=None, description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(
        default=None, description="SASL password (from a secret file or env; never logged)."
    )
    kafka_ssl_ca_location: Path | None = Field(
        default=None, description="CA bundle that signs the brokers' certificates (SSL, SASL_SSL)."
    )
    kafka_extra_config: dict[str, str] = Field(
        default_factory=dict,
        description="More librdkafka properties for the stages' clients (JSON object), e.g. "
        '{"ssl.endpoint.identification.algorithm": "https"}; not for secrets.',
    )
    topic_prefix: str = Field(
        default="docs.",
        pattern=r"^[A-Za-z0-9._-]*$",
        description="Prefix of every docstreams topic name (e.g. to share a cluster).",
    )

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap_servers or f"127.0.0.1:{self.kafka_port}"


class IndexSettings(Section):
    """Weaviate: the connection, the collection, the vector index."""

    weaviate_host: str = Field(default="127.0.0.1", description="Weaviate HTTP/gRPC host.")
    weaviate_http_port: Port = Field(
        default=DEFAULT_WEAVIATE_HTTP_PORT, description="Weaviate HTTP port (local stack too)."
    )
    weaviate_grpc_port: Port = Field(
        default=DEFAULT_WEAVIATE_GRPC_PORT, description="Weaviate gRPC port (local stack too)."
    )
    weaviate_secure: bool = Field(
        default=False, description="Talk to Weaviate over TLS (HTTPS and gRPC with TLS)."
    )
    weaviate_api_key: SecretStr | None = Field(
        default=None, description="Weaviate API key; unset means anonymous access."
    )
    weaviate_collection: str = Field(
        default="DocstreamsChunk",
        pattern=r"^[A-Z][A-Za-z0-9_]{0,200}$",
        description="Weaviate collection holding every tenant's chunks (one tenant each); "
        "its companion <name>Version holds each document's current version.",
    )
    weaviate_hnsw_max_connections: int = Field(
        default=16,
        ge=4,
        le=128,
        description="HNSW links per node of the chunks collection (set when it is created).",
    )
    weaviate_hnsw_ef_construction: int = Field(
        default=64,
        ge=8,
        le=1024,
        description="HNSW build-time search width of the chunks collection (set when created); "
        "higher: better recall, slower indexing.",
    )
    weaviate_insert_objects: int = Field(
        default=128,
        ge=1,
        le=10_000,
        description="Objects per Weaviate insert request (index and embedding cache): bounds "
        "the client's copies of a large window's objects.",
    )
    search_mode: Literal["hybrid", "vector", "keyword"] = Field(
        default="hybrid",
        description="`docstreams search` default: hybrid (BM25 on the text fused with the "
        "vector search), vector (meaning only) or keyword (BM25 only: exact words, no model).",
    )
    search_alpha: float = Field(
        default=0.25,
        ge=0.0,
        le=1.0,
        description="Hybrid search's weight of the vector side (1: vector only, 0: keyword "
        "only); 0.25 found most in bench/retrieval.py (docs/benchmarks.md).",
    )

    @property
    def weaviate_url(self) -> str:
        return f"http://{self.weaviate_host}:{self.weaviate_http_port}"


class TrackerSettings(Section):
    """The tracker: status API, callbacks, re-checks, retention."""

    tracker_host: str = Field(
        default="127.0.0.1", description="Address the tracker API binds (0.0.0.0 in a pod)."
    )
    tracker_port: Port = Field(default=18090, description="Port of the tracker's status API.")
    tracker_advertised_host: str | None = Field(
        default=None,
        description="Host other tracker replicas use to reach this one (e.g. the pod IP); "
        "requests for documents on another replica's partitions are forwarded there.",
    )
    tracker_url: str | None = Field(
        default=None,
        description="Where `docstreams status` finds the tracker's status API; default: "
        "http://127.0.0.1:TRACKER_PORT.",
    )
    callback_secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='Callback signing keys by tenant id (JSON, e.g. {"acme": "..."}); the key '
        '"*" signs for tenants without their own. A tenant without a key gets no callback.',
    )
    callback_secrets_file: Path | None = Field(
        default=None,
        description="JSON file of signing keys by tenant (a mounted Secret); merged over "
        "CALLBACK_SECRETS and re-read when it changes.",
    )
    callback_timeout_s: float = Field(
        default=10.0, gt=0, description="Connect/read timeout of one callback request."
    )
    callback_give_up_s: float = Field(
        default=600.0, gt=0, description="How long a callback is retried before it is failed."
    )
    callback_allowlist: list[str] = Field(
        default_factory=list,
        description="CIDRs callbacks may reach although not public (JSON list); empty: public "
        "addresses only.",
    )
    tracker_recheck_after_s: float = Field(
        default=120.0,
        gt=0,
        description="A document in flight whose state has not changed for this long is folded "
        "again from its records in the ingest and events topics (a lost delivery cannot leave it "
        "waiting forever); after a re-check that finds nothing new, the next waits twice as long "
        "(up to an hour).",
    )
    tracker_fold_batch_wait_s: float = Field(
        default=0.2,
        ge=0,
        description="The tracker folds the records that arrive within this long (up to 500) "
        "before it makes their documents' states durable, once per document: a state change "
        "with nothing to act on waits at most this long to reach the changelog (one with an "
        "action, e.g. a completion, is written at once). 0: every record's state on its own.",
    )
    tracker_stalled_after_s: float = Field(
        default=1800.0,
        gt=0,
        description="A document in flight whose state has not changed for this long counts as "
        "stalled (/stats, docstreams_documents_stalled, the DocstreamsNoCompletions alert).",
    )
    keep_completed_blobs: bool = Field(
        default=False, description="Keep a completed version's downloaded file in the blob store."
    )
    failed_retention_s: float = Field(
        default=7 * 24 * 3600.0,
        gt=0,
        description="How long a failed document's blob, and a deleted document's state, are kept.",
    )

    @property
    def status_api_url(self) -> str:
        return (self.tracker_url or f"http://127.0.0.1:{self.tracker_port}").rstrip("/")


class LocalStackSettings(Section):
    """The local stack (development and tests): versions, ports, limits."""

    state_dir: Path = Field(
        default=Path.home() / ".local" / "state" / "docstreams",
        description="Data, logs and pid files of the local stack.",
    )
    kafka_version: str = Field(
        default=DEFAULT_KAFKA_VERSION, description="Apache Kafka version fetched from Maven."
    )
    kafka_controller_port: Port = Field(
        default=DEFAULT_KAFKA_CONTROLLER_PORT, description="Local KRaft controller port."
    )
    kafka_heap: str = Field(default="512m", description="Local broker JVM max heap (-Xmx).")
    kafka_jvm_options: str = Field(
        default="-XX:TieredStopAtLevel=1",
        description="Extra JVM options of the local broker (shell words). The default compiles "
        "with C1 only: a short-lived broker on a small machine then spends far less CPU "
        "compiling (docs/benchmarks.md: 9.4 CPU-s against 23.8 for 200 documents); empty: "
        "the JVM's default tiered compilation.",
    )
    weaviate_version: str = Field(
        default=DEFAULT_WEAVIATE_VERSION, description="Weaviate Go module tag built locally."
    )
    weaviate_pprof_port: Port | None = Field(
        default=None,
        description="Local Weaviate's Go pprof listener, for profiling (bench/run.py --profile; "
        "Weaviate binds it on every interface); unset: off.",
    )
    weaviate_gossip_port: Port = Field(
        default=DEFAULT_WEAVIATE_GOSSIP_PORT, description="Local Weaviate memberlist port."
    )
    weaviate_data_port: Port = Field(
        default=DEFAULT_WEAVIATE_DATA_PORT, description="Local Weaviate cluster data port."
    )
    weaviate_raft_port: Port = Field(
        default=DEFAULT_WEAVIATE_RAFT_PORT,
        le=65534,
        description="Local Weaviate raft port; its raft RPC port is always this + 1.",
    )
    weaviate_memory_limit: str = Field(
        default="1GiB", description="GOMEMLIMIT of the local Weaviate server."
    )
    stack_start_timeout_s: float = Field(
        default=180.0, gt=0, description="How long `stack up` waits for each service."
    )
