"""Every message docstreams puts on Kafka, as frozen pydantic models.

These models are the source of truth; `schemas/*.schema.json` are generated from them
(`docstreams schemas export`) and a test keeps the files in step. On the wire a message is the
orjson encoding of ``model_dump(mode="json")``; vectors travel as base64 little-endian float32.
"""

from __future__ import annotations

import base64
import hashlib
import resource
from array import array
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streams.errors import DocstreamsError
from streams.vectors import from_le_bytes, to_le_bytes, vector

TenantId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
# Never used as a path: the blob store keys files by sha256.
DocumentId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,199}$")]
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
# A shortened content digest (128 bits of sha256), for windows and pipeline settings.
Digest = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
# A window's place that survives edits: "p26" (PDF pages from 26), "t600" (a recording from
# 600 s), "0" / "<line hash>.<n>" (a text cut point), "whole" (HTML, DOCX).
Anchor = Annotated[str, Field(pattern=r"^[A-Za-z0-9.]{1,48}$")]
_METADATA_KEY = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
# Caller's labels (e.g. case id) copied onto every chunk; bounded so they cannot bloat messages.
Metadata = Annotated[
    dict[Annotated[str, Field(pattern=_METADATA_KEY)], Annotated[str, Field(max_length=1024)]],
    Field(max_length=32, json_schema_extra={"additionalProperties": False}),
]


def utc_now() -> datetime:
    return datetime.now(UTC)


class InvalidWireMessage(DocstreamsError):
    """Bytes on a topic that are not a valid message of the expected type."""


def _require_envelope(schema: dict[str, Any]) -> None:
    # Defaults make these optional for pydantic, but every producer must send them.
    schema["required"] = ["schema_version", "type", *schema.get("required", [])]


class Message(BaseModel):
    """Base of every Kafka message: versioned, strict (unknown fields are refused), immutable."""

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra=_require_envelope)
    topic_key: ClassVar[str]  # which declared topic carries it (streams/pipeline.py)

    schema_version: Literal[1] = 1

    def kafka_key(self) -> bytes:
        raise NotImplementedError

    def to_wire(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json", exclude_none=True))

    @classmethod
    def from_wire(cls, value: bytes | None) -> Any:
        if value is None:
            raise InvalidWireMessage(f"empty record where a {cls.__name__} was expected")
        try:
            return cls.model_validate(orjson.loads(value))
        except orjson.JSONDecodeError as exc:
            raise InvalidWireMessage(f"not JSON: {exc}") from None
        except ValidationError as exc:
            raise InvalidWireMessage(
                f"not a valid {cls.__name__}: {validation_problems(exc)}"
            ) from None


def validation_problems(error: ValidationError) -> str:
    """Each invalid field and what is wrong with it, without the values sent: a reason is read
    by the caller and operators, and a value may be anything (a path, a secret, megabytes)."""
    return "; ".join(
        f"{'.'.join(str(part) for part in problem['loc']) or 'record'}: {problem['msg']}"
        for problem in error.errors(include_url=False, include_input=False)
    )


class DocumentMessage(Message):
    """A message about one document: keyed by document_id so its events stay in order."""

    tenant_id: TenantId
    document_id: DocumentId

    def kafka_key(self) -> bytes:
        return f"{self.tenant_id}/{self.document_id}".encode()


class WindowMessage(DocumentMessage):
    """A message about one window of one version: keyed to spread windows over partitions."""

    version: Sha256Hex
    window: int = Field(ge=0)
    window_count: int = Field(ge=1)
    anchor: Anchor | None = Field(
        default=None,
        description="Where the window is, in terms that survive edits; chunk ids derive from it.",
    )

    def kafka_key(self) -> bytes:
        # By anchor: the same place of every version meets the same consumer, in order.
        return f"{self.tenant_id}/{self.document_id}:{self.anchor or self.window}".encode()

    def window_identity(self) -> dict[str, Any]:
        """The fields that name this window, for the messages and events derived from it."""
        return {
            "tenant_id": self.tenant_id,
            "document_id": self.document_id,
            "version": self.version,
            "window": self.window,
            "window_count": self.window_count,
            "anchor": self.anchor,
        }


class WindowPayload(WindowMessage):
    """Work messages that carry the document's context down the pipeline to the index."""

    content_type: str
    filename: str | None = None
    metadata: Metadata = Field(default_factory=dict)
    fingerprint: Digest | None = Field(
        default=None,
        description="Digest of everything besides the text that shapes the window's chunks and "
        "objects (chunking, embedding model, metadata): chunk ids derive from it.",
    )
    base_version: Sha256Hex | None = Field(
        default=None,
        description="The current version whose objects this window may reuse (see reuse_from); "
        "unset: every chunk is written.",
    )
    reuse_from: list[Anchor] = Field(
        default_factory=list,
        max_length=1000,
        description="The anchors of the base version's objects this window may reuse: each is "
        "given to one window of the version, which reuses what it still has and drops the rest.",
    )

    def carried(self) -> dict[str, Any]:
        """Identity plus context: what the next stage's output repeats unchanged."""
        return {
            **self.window_identity(),
            "content_type": self.content_type,
            "filename": self.filename,
            "metadata": self.metadata,
            "fingerprint": self.fingerprint,
            "base_version": self.base_version,
            "reuse_from": self.reuse_from,
        }


# --- ingest --------------------------------------------------------------------------------
class DocumentSubmitted(DocumentMessage):
    """A request to ingest one document. Secrets never travel here: callback signing keys are
    looked up by tenant_id in configuration."""

    topic_key: ClassVar[str] = "ingest"
    type: Literal["DocumentSubmitted"] = "DocumentSubmitted"
    source: str = Field(
        min_length=1,
        max_length=4096,
        description="An http(s) URL, or a local path / file URL when local sources are enabled.",
    )
    filename: str | None = Field(default=None, max_length=512)
    content_type: str | None = Field(
        default=None, max_length=255, description="A hint only: the type is sniffed from bytes."
    )
    callback_url: str | None = Field(default=None, pattern=r"^https?://", max_length=4096)
    pages_per_window: int | None = Field(default=None, ge=1, le=1000)
    metadata: Metadata = Field(default_factory=dict)
    submitted_at: datetime = Field(default_factory=utc_now)
    request_id: str | None = Field(default=None, max_length=128)


class DeleteRequested(DocumentMessage):
    """A request to remove a document (every version) from the index; the tracker carries it
    out and marks the document deleted."""

    topic_key: ClassVar[str] = "ingest"
    type: Literal["DeleteRequested"] = "DeleteRequested"
    requested_at: datetime = Field(default_factory=utc_now)
    request_id: str | None = Field(default=None, max_length=128)


IngestRequest = DocumentSubmitted | DeleteRequested


def ingest_from_wire(value: bytes | None) -> IngestRequest:
    """Decode a record of the ingest topic, which carries two request types."""
    kind = _wire_type(value)
    if kind == "DeleteRequested":
        return DeleteRequested.from_wire(value)  # type: ignore[no-any-return]
    return DocumentSubmitted.from_wire(value)  # type: ignore[no-any-return]


def _wire_type(value: bytes | None) -> object:
    try:
        data = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    return data.get("type") if isinstance(data, dict) else None


# --- work messages -------------------------------------------------------------------------
class ExtractTask(WindowPayload):
    topic_key: ClassVar[str] = "extract-tasks"
    type: Literal["ExtractTask"] = "ExtractTask"
    blob: str = Field(description="Blob store key of the downloaded content.")
    page_start: int = Field(ge=1, description="First page of the window, 1-based.")
    page_end: int = Field(ge=1, description="Last page of the window, inclusive.")
    start_s: float | None = Field(
        default=None, ge=0, description="Audio/video: where the window starts, in seconds."
    )
    end_s: float | None = Field(
        default=None, ge=0, description="Audio/video: where the window ends, in seconds."
    )
    byte_start: int | None = Field(
        default=None, ge=0, description="Text: where the window starts in the file (a line)."
    )
    byte_end: int | None = Field(default=None, ge=0, description="...and where the next starts.")
    previous_digest: Digest | None = Field(
        default=None,
        description="The digest of the base version's window at this anchor, when this window "
        "is given exactly that window's objects: a window whose text has it goes no further.",
    )
    previous_chunks: int | None = Field(default=None, ge=0, description="...and its chunks.")
    raw_digest: Digest | None = Field(
        default=None, description="PDF: digest of the window's pages' content streams and fonts."
    )
    previous_raw_digest: Digest | None = Field(
        default=None,
        description="...the base window's: equal, the text is the base's, and is not extracted.",
    )


class Page(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    number: int = Field(ge=1)
    text: str
    error: str | None = Field(default=None, description="Why this page has no text, if it failed.")
    start_s: float | None = Field(
        default=None, ge=0, description="Audio/video: a transcript segment's start, in seconds."
    )
    end_s: float | None = Field(default=None, ge=0, description="...and its end.")


class PageBatch(WindowPayload):
    topic_key: ClassVar[str] = "pages"
    type: Literal["PageBatch"] = "PageBatch"
    pages: list[Page]


class Chunk(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str = Field(
        description="The Weaviate id: uuid5 of tenant, document, fingerprint, anchor, the text, "
        "its pages or times and its ordinal among identical ones (unchanged text: same id)."
    )
    index: int = Field(ge=0, description="Position within the window.")
    text: str = Field(min_length=1)
    page_start: int = Field(ge=1)
    page_end: int = Field(ge=1)
    tokens: int = Field(ge=1)
    start_s: float | None = Field(
        default=None, ge=0, description="Audio/video: the time range the chunk's words span."
    )
    end_s: float | None = Field(default=None, ge=0)


def content_key(chunk: Chunk) -> str:
    """What a chunk is, wherever it falls: its text and its pages or times. Objects carry it,
    so a later version finds the objects of the chunks it still has."""
    return content_key_of(chunk.text, chunk.page_start, chunk.page_end, chunk.start_s, chunk.end_s)


def content_key_of(
    text: str, page_start: int, page_end: int, start_s: float | None, end_s: float | None
) -> str:
    """``content_key`` of a chunk not made yet (the chunker names a chunk before making it)."""
    place = f"{page_start}-{page_end}/{start_s}-{end_s}"
    return hashlib.sha256(f"{place}\x1f{text}".encode()).hexdigest()[:32]


class ChunkBatch(WindowPayload):
    topic_key: ClassVar[str] = "chunks"
    type: Literal["ChunkBatch"] = "ChunkBatch"
    chunks: list[Chunk]


class EmbeddedChunk(Chunk):
    vector: str = Field(description="base64 of little-endian float32 values.")

    def vector_values(self) -> array[float]:
        return decode_vector(self.vector)


class VectorBatch(WindowPayload):
    topic_key: ClassVar[str] = "vectors"
    type: Literal["VectorBatch"] = "VectorBatch"
    model: str
    dimensions: int = Field(ge=1)
    chunks: list[EmbeddedChunk]


def encode_vector(values: Iterable[float]) -> str:
    return base64.b64encode(to_le_bytes(vector(values))).decode("ascii")


def decode_vector(encoded: str) -> array[float]:
    return from_le_bytes(base64.b64decode(encoded))


# --- events (docs.events, folded by the tracker) -------------------------------------------
def peak_rss_bytes() -> int:
    """This process's peak resident memory so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class StageEvent(DocumentMessage):
    topic_key: ClassVar[str] = "events"
    stage: str
    at: datetime = Field(default_factory=utc_now)
    peak_rss_bytes: int | None = Field(
        default_factory=peak_rss_bytes,
        ge=0,
        description="Peak RSS of the process that emitted the event (the tracker keeps the max).",
    )


class DocumentPlanned(StageEvent):
    type: Literal["DocumentPlanned"] = "DocumentPlanned"
    version: Sha256Hex
    window_count: int = Field(ge=0)
    pages: int = Field(ge=0)
    bytes: int = Field(ge=0)
    content_type: str
    blob: str | None = Field(default=None, description="Blob store key of the content.")
    submitted_at: datetime | None = Field(
        default=None, description="submitted_at of the request this plans."
    )
    unchanged: bool = Field(
        default=False,
        description="This version is already indexed and current: nothing is re-extracted.",
    )
    base_version: Sha256Hex | None = Field(
        default=None,
        description="The current version this one reuses windows and objects of, if any.",
    )
    fingerprint: Digest | None = Field(
        default=None, description="How its windows are built (see WindowPayload)."
    )
    encoding: str | None = Field(
        default=None,
        max_length=40,
        description="Text, Markdown and HTML: the character encoding it came in (a Python codec "
        "name, e.g. utf-8, cp1252, utf-16); stored and processed as UTF-8.",
    )


class WindowDone(StageEvent):
    """A stage finished one window of one version (one subclass per stage)."""

    version: Sha256Hex
    window: int = Field(ge=0)
    window_count: int = Field(ge=1)
    items: int = Field(ge=0, description="Pages, chunks or vectors this stage produced.")
    anchor: Anchor | None = None


class WindowExtracted(WindowDone):
    type: Literal["WindowExtracted"] = "WindowExtracted"
    stage: Literal["extract"] = "extract"
    failed_pages: int = Field(default=0, ge=0)
    digest: Digest | None = Field(default=None, description="Digest of the window's text.")
    unchanged: bool = Field(
        default=False,
        description="The text equals the current version's at this anchor: the window goes no "
        "further, and its chunks (previous_chunks) stand.",
    )
    chunks: int = Field(default=0, ge=0, description="Unchanged: the chunks that stand.")
    raw_digest: Digest | None = Field(default=None, description="PDF: see ExtractTask.")
    sources: list[Anchor] | None = Field(
        default=None, description="Unchanged: the anchors its standing objects carry."
    )


class WindowChunked(WindowDone):
    type: Literal["WindowChunked"] = "WindowChunked"
    stage: Literal["chunk"] = "chunk"


class WindowEmbedded(WindowDone):
    type: Literal["WindowEmbedded"] = "WindowEmbedded"
    stage: Literal["embed"] = "embed"
    tokens: int = Field(default=0, ge=0, description="Embedding tokens paid to the provider.")
    cached: int = Field(
        default=0, ge=0, description="Vectors not paid for: from the cache or an identical text."
    )
    cached_tokens: int = Field(default=0, ge=0, description="Tokens of those vectors.")


class WindowIndexed(WindowDone):
    type: Literal["WindowIndexed"] = "WindowIndexed"
    stage: Literal["index"] = "index"
    written: int | None = Field(
        default=None, ge=0, description="Objects written (the others were reused); unset: all."
    )
    dropped: int = Field(
        default=0, ge=0, description="Objects of the current version this window no longer has."
    )
    sources: list[Anchor] | None = Field(
        default=None, description="The anchors its objects carry (reused ones keep theirs)."
    )


class DocumentFailed(StageEvent):
    type: Literal["DocumentFailed"] = "DocumentFailed"
    reason: str
    error_class: str
    version: Sha256Hex | None = None
    window: int | None = None
    submitted_at: datetime | None = Field(
        default=None, description="submitted_at of the request that failed (download only)."
    )


class DocumentCompleted(StageEvent):
    """The tracker checked the index and made this version the searchable one."""

    type: Literal["DocumentCompleted"] = "DocumentCompleted"
    stage: Literal["tracker"] = "tracker"
    submitted_at: datetime | None = Field(
        default=None, description="submitted_at of the request this completes."
    )
    version: Sha256Hex
    chunks: int = Field(ge=0)
    reused_unchanged: bool = False
    tokens_spent: int = Field(default=0, ge=0)
    objects_removed: int = Field(
        default=0, ge=0, description="Objects of earlier versions deleted after the switch."
    )


class DocumentDeleted(StageEvent):
    type: Literal["DocumentDeleted"] = "DocumentDeleted"
    stage: Literal["tracker"] = "tracker"
    objects_deleted: int = Field(ge=0)


class CallbackResult(StageEvent):
    """How delivering one callback ended (recorded in the document's status)."""

    type: Literal["CallbackResult"] = "CallbackResult"
    stage: Literal["tracker"] = "tracker"
    idempotency_key: str
    event: str
    outcome: Literal["delivered", "failed", "skipped"]
    status_code: int | None = None
    attempts: int = Field(ge=0)
    detail: str | None = Field(default=None, max_length=4000)


# --- callbacks (docs.callbacks, delivered by the tracker) ----------------------------------
class CallbackDue(DocumentMessage):
    """A callback to deliver. It carries the exact body and idempotency key, so a redelivery
    after a crash sends the same bytes; the signing key is looked up by tenant, never sent."""

    topic_key: ClassVar[str] = "callbacks"
    type: Literal["CallbackDue"] = "CallbackDue"
    url: str = Field(pattern=r"^https?://", max_length=4096)
    event: Literal["document.completed", "document.failed"]
    idempotency_key: str = Field(pattern=r"^[0-9a-f]{32}$")
    body: str = Field(description="The JSON body to POST, exactly as signed.")


# --- dead letters --------------------------------------------------------------------------
class DeadLetter(Message):
    """Input a stage could not process, with why, and the original record to replay."""

    topic_key: ClassVar[str] = "dlq"
    type: Literal["DeadLetter"] = "DeadLetter"
    stage: str
    reason: str
    error_class: str
    attempts: int = Field(ge=1)
    source_topic: str
    source_partition: int
    source_offset: int
    tenant_id: str | None = None
    document_id: str | None = None
    original_key: str | None = Field(default=None, description="base64 of the record key")
    original_value: str | None = Field(default=None, description="base64 of the record value")
    failed_at: datetime = Field(default_factory=utc_now)

    def kafka_key(self) -> bytes:
        return f"{self.tenant_id}/{self.document_id}".encode() if self.document_id else b""


WIRE_TYPES: tuple[type[Message], ...] = (
    DocumentSubmitted,
    ExtractTask,
    PageBatch,
    ChunkBatch,
    VectorBatch,
    DocumentPlanned,
    WindowExtracted,
    WindowChunked,
    WindowEmbedded,
    WindowIndexed,
    DocumentFailed,
    DeleteRequested,
    DocumentCompleted,
    DocumentDeleted,
    CallbackResult,
    CallbackDue,
    DeadLetter,
)
