"""Every setting docstreams reads, in one place.

All values come from environment variables prefixed ``DOCSTREAMS_`` (or a ``.env`` file in the
working directory). The README's settings table is checked against this class by a test, so a
setting cannot exist without being documented.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

import orjson
from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)

ENV_PREFIX = "DOCSTREAMS_"

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


class Settings(BaseSettings):
    """docstreams configuration. Field descriptions become the README's settings table."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Secret files (a mounted Kubernetes Secret) come last: env and .env override them.
        secrets_dir = os.environ.get(f"{ENV_PREFIX}SECRETS_DIR")
        files = (
            SecretsSettingsSource(settings_cls, secrets_dir=secrets_dir)
            if secrets_dir
            else file_secret_settings
        )
        return init_settings, env_settings, dotenv_settings, files

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="WARNING", description="Log level of every app (`-v` on the command line: INFO)."
    )
    secrets_dir: Path | None = Field(
        default=None,
        description="Directory of secret files, one per setting, named like its variable (e.g. "
        "DOCSTREAMS_OPENAI_API_KEY): a mounted Secret; values are never logged.",
    )

    # --- local stack -----------------------------------------------------------------------
    cache_dir: Path = Field(
        default=Path.home() / ".cache" / "docstreams",
        description="Where Kafka jars and the Weaviate binary are cached (outside the repo).",
    )
    state_dir: Path = Field(
        default=Path.home() / ".local" / "state" / "docstreams",
        description="Data, logs and pid files of the local stack.",
    )
    kafka_version: str = Field(
        default=DEFAULT_KAFKA_VERSION, description="Apache Kafka version fetched from Maven."
    )
    kafka_port: Port = Field(default=DEFAULT_KAFKA_PORT, description="Local broker port.")
    kafka_controller_port: Port = Field(
        default=DEFAULT_KAFKA_CONTROLLER_PORT, description="Local KRaft controller port."
    )
    kafka_heap: str = Field(default="512m", description="Local broker JVM max heap (-Xmx).")
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

    # --- connections -----------------------------------------------------------------------
    kafka_bootstrap_servers: str | None = Field(
        default=None,
        description="Kafka bootstrap servers; default: the local broker, 127.0.0.1:KAFKA_PORT.",
    )
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
    weaviate_host: str = Field(default="127.0.0.1", description="Weaviate HTTP/gRPC host.")
    weaviate_http_port: Port = Field(
        default=DEFAULT_WEAVIATE_HTTP_PORT, description="Weaviate HTTP port (local stack too)."
    )
    weaviate_grpc_port: Port = Field(
        default=DEFAULT_WEAVIATE_GRPC_PORT, description="Weaviate gRPC port (local stack too)."
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
    weaviate_secure: bool = Field(
        default=False, description="Talk to Weaviate over TLS (HTTPS and gRPC with TLS)."
    )
    weaviate_api_key: SecretStr | None = Field(
        default=None, description="Weaviate API key; unset means anonymous access."
    )
    topic_prefix: str = Field(
        default="docs.",
        pattern=r"^[A-Za-z0-9._-]*$",
        description="Prefix of every docstreams topic name (e.g. to share a cluster).",
    )

    # --- stage runner ----------------------------------------------------------------------
    batch_max_messages: int = Field(
        default=16, ge=1, le=10_000, description="Most input records one transaction takes."
    )
    batch_max_wait_s: float = Field(
        default=0.05,
        ge=0,
        description="After a batch's first record, how long a runner waits for more to fill it "
        "(the embed stage uses EMBED_GATHER_WAIT_S).",
    )
    batch_max_seconds: float = Field(
        default=20.0,
        gt=0,
        description="A batch stops taking records after this much work; the rest goes into "
        "the next one (bounds transaction length and redone work after a crash).",
    )
    consumer_queue_kbytes: int = Field(
        default=2048,
        ge=1024,
        description="librdkafka prefetch bound (queued.max.messages.kbytes and fetch.max.bytes): "
        "caps consumer memory; a record larger than this still comes through, one at a time "
        "(8192 made index and embed 18 MB larger, at the same speed).",
    )
    transaction_timeout_s: float = Field(
        default=120.0, gt=0, le=900, description="Kafka transaction timeout; above any one batch."
    )
    stage_attempts: int = Field(
        default=3, ge=1, le=20, description="Tries per input record before it is dead-lettered."
    )
    retry_backoff_s: float = Field(
        default=0.5, ge=0, description="First retry delay; doubles per attempt, with jitter."
    )
    metrics_port: Port | None = Field(
        default=None,
        description="Port of each app's /metrics, /healthz and /readyz; unset: not served. "
        "`run all` gives its stages this port + 0..4.",
    )
    metrics_host: str = Field(
        default="127.0.0.1", description="Address the endpoints bind (0.0.0.0 in a pod)."
    )
    instance_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._-]{1,100}$",
        description="Stable id of this replica (e.g. the pod name): enables static group "
        "membership and a stable transactional.id; unset means host-pid.",
    )

    # --- download ---------------------------------------------------------------------------
    blob_dir: Path = Field(
        default=Path.home() / ".local" / "share" / "docstreams" / "blobs",
        description="Blob store root: downloaded documents, one file per tenant/document/sha256.",
    )
    allow_local_sources: bool = Field(
        default=False, description="Accept local paths and file:// sources (dev and tests only)."
    )
    fetch_allowlist: list[str] = Field(
        default_factory=list,
        description="CIDRs the fetcher may reach although not public (JSON list, e.g. "
        '["127.0.0.1/32"]); empty: public addresses only.',
    )
    outbound_ports: list[int] = Field(
        default_factory=lambda: [80, 443],
        description="Ports downloads and callbacks may connect to (JSON list; empty: any); "
        "allowlisted addresses may use any port.",
    )
    max_download_bytes: int = Field(
        default=2 * 2**30, ge=1, description="Largest document accepted, in bytes."
    )
    fetch_attempts: int = Field(default=5, ge=1, description="Tries per download (resuming).")
    fetch_timeout_s: float = Field(default=30.0, gt=0, description="Connect and read timeout.")
    fetch_min_bytes_per_s: int = Field(
        default=1024,
        ge=0,
        description="Slowest average download rate accepted (after 10 s); catches trickling.",
    )
    pages_per_window: int = Field(
        default=25, ge=1, le=1000, description="Pages per ExtractTask (requests may override)."
    )
    text_window_bytes: int = Field(
        default=256 * 1024, ge=4096, description="Bytes of plain text per ExtractTask."
    )

    # --- audio and video ------------------------------------------------------------------------
    media_window_s: float = Field(
        default=600.0, ge=10, description="Audio/video are transcribed in windows this long."
    )
    media_overlap_s: float = Field(
        default=2.0,
        ge=0,
        description="Each window's audio reaches this far into its neighbours, so a word cut at "
        "the edge is heard whole; words are kept by the window their start falls in.",
    )
    max_media_s: float = Field(
        default=6 * 3600.0, gt=0, description="Longer recordings are refused (resource_limit)."
    )
    ffmpeg_timeout_s: float = Field(
        default=300.0, gt=0, description="Longest ffprobe/ffmpeg run (one window's audio)."
    )
    transcribe_timeout_s: float = Field(
        default=1800.0, gt=0, description="Longest transcription of one window (resource_limit)."
    )
    transcriber: Literal["local", "openai"] = Field(
        default="local",
        description="local: PocketSphinx with its bundled US English model (offline); openai: "
        "the audio transcription API (or a compatible server at OPENAI_BASE_URL).",
    )
    openai_transcription_model: str = Field(
        default="whisper-1", description="Transcription model for TRANSCRIBER=openai."
    )

    # --- hostile files --------------------------------------------------------------------------
    parser_memory_mb: int = Field(
        default=1024,
        ge=128,
        description="Address-space limit of the child process that parses PDFs, HTML and DOCX "
        "(page counts in download, text in extract); over it: resource_limit in the DLQ.",
    )
    parser_timeout_s: float = Field(
        default=120.0, gt=0, description="Longest one parse (a page count, one window) may take."
    )
    max_pages: int = Field(
        default=100_000, ge=1, description="Documents with more pages are refused (resource_limit)."
    )
    max_page_chars: int = Field(
        default=1_000_000,
        ge=1000,
        description="A page with more text than this is refused (resource_limit).",
    )
    pdf_max_decoded_stream_mb: int = Field(
        default=256, ge=1, description="pypdf's cap on one decompressed stream (bombs)."
    )

    # --- extract / chunk / embed / index ------------------------------------------------------
    pdf_backend: Literal["pypdfium2", "pypdf"] = Field(
        default="pypdfium2", description="PDF text extractor."
    )
    pdf_reader_keep_mb: int = Field(
        default=96,
        ge=0,
        description="The parser child keeps a PDF open for its next window while the open PDF "
        "holds less memory than this (reopening a 1 GB PDF for every window halves throughput); "
        "then it is closed and the heap given back. 0: reopen for every window.",
    )
    chunk_max_tokens: int = Field(
        default=200, ge=16, description="Chunk size in tokens of the embedding model."
    )
    chunk_overlap_tokens: int = Field(default=20, ge=0, description="Overlap between chunks.")
    embedder: Literal["local", "openai"] = Field(
        default="local",
        description="local: all-MiniLM-L6-v2 (int8 ONNX, offline); "
        "openai: the OpenAI API or any OpenAI-compatible server.",
    )
    openai_model: str = Field(default="text-embedding-3-small", description="Embedding model.")
    openai_dimensions: int | None = Field(
        default=None, ge=1, description="Requested dimensions (text-embedding-3 models only)."
    )
    openai_base_url: str | None = Field(
        default=None, description="OpenAI-compatible API base URL; unset: api.openai.com."
    )
    openai_api_key: SecretStr | None = Field(default=None, description="API key for `openai`.")
    openai_timeout_s: float = Field(
        default=60.0, gt=0, description="Timeout of one embedding request (a hung provider)."
    )
    embed_max_inputs_per_request: int = Field(
        default=512,
        ge=1,
        le=2048,
        description="Inputs in one embedding request (OpenAI allows 2048). Fewer bound the "
        "memory each response takes; a batch's chunks still go in as few requests as fit.",
    )
    embed_max_tokens_per_input: int = Field(
        default=8192, ge=1, description="Provider limit: tokens of one input (openai)."
    )
    embed_max_tokens_per_request: int = Field(
        default=300_000, ge=1, description="Provider limit: tokens summed over one request."
    )
    embed_requests_per_minute: float | None = Field(
        default=None,
        gt=0,
        description="Pace requests to this rate (per replica) until the provider's "
        "x-ratelimit headers say otherwise; unset: paced by the headers alone.",
    )
    embed_tokens_per_minute: float | None = Field(
        default=None, gt=0, description="Pace tokens likewise (x-ratelimit-*-tokens)."
    )
    embed_probe_interval_s: float = Field(
        default=300.0,
        gt=0,
        description="While the provider refuses for quota or credentials, the embed stage "
        "stays paused and tries one request this often (or POST /resume on its health port).",
    )
    embed_gather_wait_s: float = Field(
        default=0.5,
        ge=0,
        description="How long the embed stage waits for more chunk batches to fill its "
        "requests, when BATCH_MAX_WAIT_S after the first brought more (a busy topic); a lone "
        "window is not held back.",
    )
    embed_onnx_arena: bool = Field(
        default=True,
        description="Local embedder: keep onnxruntime's CPU memory arena (at batches of 8: 17% "
        "faster for about 65 MB more; false for the smallest footprint).",
    )
    embed_local_quantization: Literal["dynamic", "weights"] = Field(
        default="dynamic",
        description="Local embedder: dynamic: int8 weights and activations (derived once from "
        "the shipped file into CACHE_DIR/models; 1.75x as fast on CPUs with VNNI, vectors at a "
        "median cosine of 0.994 to the shipped file's); weights: the shipped file as is (int8 "
        "weights, float32 products). Each is its own model: changing it means re-indexing.",
    )
    embed_onnx_threads: int = Field(
        default=0,
        ge=0,
        description="Local embedder: onnxruntime threads for one batch; 0: one per CPU this "
        "process may run on (a pod's CPU share is not visible as CPUs: k8s/base sets it from "
        "the CPU request). Idle threads do not spin, so other processes keep the cores.",
    )
    embed_cache: bool = Field(
        default=True,
        description="Reuse vectors of texts embedded before (same model and dimensions), kept "
        "in Weaviate collection <WEAVIATE_COLLECTION>EmbeddingCache<dimensions>.",
    )
    embed_cache_scope: Literal["tenant", "global"] = Field(
        default="tenant",
        description="tenant: a tenant reuses only its own vectors (no tenant can learn from "
        "its token bill what another embedded); global: every tenant shares one cache.",
    )
    embed_cache_max_age_days: float = Field(
        default=30.0, gt=0, description="Cached vectors older than this are swept away."
    )
    embed_cache_max_objects: int = Field(
        default=2_000_000,
        ge=1,
        description="Most cached vectors per cache tenant; the oldest beyond it are swept.",
    )
    weaviate_collection: str = Field(
        default="DocstreamsChunk",
        pattern=r"^[A-Z][A-Za-z0-9_]{0,200}$",
        description="Weaviate collection holding every tenant's chunks (one tenant each); "
        "its companion <name>Version holds each document's current version.",
    )

    # --- tracker: status API, callbacks, cleanup -------------------------------------------
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
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap_servers or f"127.0.0.1:{self.kafka_port}"

    @property
    def status_api_url(self) -> str:
        return (self.tracker_url or f"http://127.0.0.1:{self.tracker_port}").rstrip("/")

    @property
    def weaviate_url(self) -> str:
        return f"http://{self.weaviate_host}:{self.weaviate_http_port}"


def env_name(field: str) -> str:
    """The environment variable that sets ``field``."""
    return f"{ENV_PREFIX}{field.upper()}"


def as_environment(settings: Settings) -> dict[str, str]:
    """The environment variables that reproduce ``settings`` in a child process."""
    env = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, list | dict):
            # Complex values are read as JSON.
            env[env_name(name)] = orjson.dumps(value, default=_reveal).decode()
        elif value is not None:
            env[env_name(name)] = str(value)
    return env


def _reveal(value: object) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def settings_table() -> list[tuple[str, str, str]]:
    """(variable, default, description) for every setting, in declaration order."""
    rows = []
    for name, info in Settings.model_fields.items():
        default = info.default
        if isinstance(default, Path) and default.is_relative_to(Path.home()):
            shown = "~/" + str(default.relative_to(Path.home()))
        else:
            shown = "" if default is None else str(default)
        rows.append((env_name(name), shown, info.description or ""))
    return rows
