"""A dead letter for an input that cannot be processed, and the document failure it causes."""

from __future__ import annotations

import base64
import contextlib
from datetime import datetime
from typing import Any

import orjson
from confluent_kafka import Message as Record
from pydantic import ValidationError

from streams.errors import public_reason
from streams.messages import DeadLetter, DocumentFailed, Message

_REASON_CHARS = 4000


def dead_letter(stage: str, record: Record, error: BaseException, attempts: int) -> list[Message]:
    """The DeadLetter (with the original record, for a replay once the cause is fixed) and, when
    the record names its document, the DocumentFailed that tells the tracker and the caller."""
    reason = public_reason(error, _REASON_CHARS)
    ids = record_identity(record.value())
    letter = DeadLetter(
        stage=stage,
        reason=reason,
        error_class=type(error).__name__,
        attempts=attempts,
        source_topic=record.topic() or "",
        source_partition=record.partition() or 0,
        source_offset=record.offset() or 0,
        tenant_id=ids.get("tenant_id"),
        document_id=ids.get("document_id"),
        original_key=_b64(record.key()),
        original_value=_b64(record.value()),
    )
    try:
        failed = DocumentFailed(
            tenant_id=ids.get("tenant_id", ""),
            document_id=ids.get("document_id", ""),
            stage=stage,
            reason=reason,
            error_class=type(error).__name__,
            version=ids.get("version"),
            window=ids.get("window"),
            submitted_at=ids.get("submitted_at"),
        )
    except ValidationError:
        return [letter]  # no valid document identity in the record: the dead letter alone tells
    return [letter, failed]


def record_identity(value: bytes | None) -> dict[str, Any]:
    """tenant/document/version/window (and a request's submitted_at) of a record, as far as its
    bytes allow."""
    try:
        data = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(data, dict):
        return {}
    ids: dict[str, Any] = {}
    for key, kind in (("tenant_id", str), ("document_id", str), ("version", str), ("window", int)):
        if isinstance(data.get(key), kind):
            ids[key] = data[key]
    submitted_at = data.get("submitted_at")
    if data.get("type") == "DocumentSubmitted" and isinstance(submitted_at, str):
        with contextlib.suppress(ValueError):  # which request failed: the tracker orders by it
            ids["submitted_at"] = datetime.fromisoformat(submitted_at)
    return ids


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")
