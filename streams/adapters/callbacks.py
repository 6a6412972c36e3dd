"""Signed callbacks: POST a document's outcome to the caller, through the SSRF guard.

Every request carries ``X-Docstreams-Timestamp`` (unix seconds), ``X-Docstreams-Signature``
(``sha256=`` + hex HMAC-SHA256 of ``timestamp + "." + body`` with the tenant's key) and an
``Idempotency-Key`` that stays the same on every retry and redelivery of that outcome.
Keys are looked up by tenant in configuration; they never travel in Kafka messages.
Redirects are not followed: a callback URL is where the caller listens, nothing else.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx
import orjson
from pydantic import SecretStr
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_random_exponential,
)

from streams.adapters.fetch import AddressGuard, pinned_request
from streams.errors import DocstreamsError, PoisonInput, TransientError
from streams.messages import CallbackDue

SIGNATURE_HEADER = "X-Docstreams-Signature"
TIMESTAMP_HEADER = "X-Docstreams-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
EVENT_HEADER = "X-Docstreams-Event"
DEFAULT_KEY = "*"
_MAX_RETRY_AFTER_S = 60.0


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify(
    secret: bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    tolerance_s: float = 300.0,
    now: float | None = None,
) -> bool:
    """What a receiver does: recompute, compare in constant time, refuse stale timestamps
    (a captured request cannot be replayed later)."""
    if not timestamp.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class SigningKeys:
    """Per-tenant signing keys from settings, overlaid by a JSON file (a mounted Secret), which
    is re-read when it changes so keys rotate without a restart."""

    def __init__(self, keys: dict[str, SecretStr], file: Path | None = None) -> None:
        self._base = {t: k.get_secret_value().encode() for t, k in keys.items()}
        self._file = file
        self._file_mtime: float | None = None
        self._from_file: dict[str, bytes] = {}

    def for_tenant(self, tenant_id: str) -> bytes | None:
        keys = {**self._base, **self._file_keys()}
        return keys.get(tenant_id) or keys.get(DEFAULT_KEY)

    def _file_keys(self) -> dict[str, bytes]:
        if self._file is None:
            return {}
        try:
            mtime = self._file.stat().st_mtime
        except FileNotFoundError:
            return {}
        if mtime != self._file_mtime:
            loaded = orjson.loads(self._file.read_bytes())
            if not isinstance(loaded, dict):
                raise DocstreamsError(f"{self._file}: expected a JSON object of tenant -> key")
            self._from_file = {str(t): str(k).encode() for t, k in loaded.items()}
            self._file_mtime = mtime
        return self._from_file


@dataclass(frozen=True)
class Delivery:
    outcome: Literal["delivered", "failed", "skipped"]
    status_code: int | None
    attempts: int
    detail: str | None = None


class _Retry(TransientError):
    def __init__(self, detail: str, status_code: int | None = None) -> None:
        super().__init__(detail)
        self.status_code = status_code


class CallbackSender:
    def __init__(
        self,
        keys: SigningKeys,
        guard: AddressGuard,
        *,
        timeout_s: float,
        give_up_s: float,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.keys = keys
        self.guard = guard
        self.give_up_s = give_up_s
        self.client = httpx.Client(
            timeout=httpx.Timeout(timeout_s), follow_redirects=False, transport=transport
        )

    def deliver(self, due: CallbackDue) -> Delivery:
        """Send until a 2xx, a final refusal, or ``give_up_s``; never raises."""
        secret = self.keys.for_tenant(due.tenant_id)
        if secret is None:
            return Delivery("skipped", None, 0, f"no callback signing key for {due.tenant_id!r}")
        attempts = 0

        def attempt() -> Delivery:
            nonlocal attempts
            attempts += 1
            return self._post(due, secret, attempts)

        retrying = Retrying(
            retry=retry_if_exception_type(_Retry),
            stop=stop_after_delay(self.give_up_s),
            wait=wait_random_exponential(multiplier=0.5, max=60),
        )
        try:
            return retrying(attempt)
        except RetryError as exc:
            last = exc.last_attempt.exception()
            code = last.status_code if isinstance(last, _Retry) else None
            return Delivery("failed", code, attempts, f"gave up after {attempts} tries: {last}")

    def _post(self, due: CallbackDue, secret: bytes, attempt: int) -> Delivery:
        body = due.body.encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "docstreams-callback/1",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(secret, timestamp, body),
            IDEMPOTENCY_HEADER: due.idempotency_key,
            EVENT_HEADER: due.event,
        }
        try:
            request = pinned_request(
                self.client, self.guard, "POST", httpx.URL(due.url), headers, body
            )
            response = self.client.send(request)
        except PoisonInput as exc:  # the guard refused the address: retrying cannot help
            return Delivery("failed", None, attempt, str(exc))
        except (httpx.TransportError, TransientError) as exc:
            raise _Retry(f"{due.url}: {exc!r}") from None
        status = response.status_code
        if 200 <= status < 300:
            return Delivery("delivered", status, attempt)
        if status in (408, 425, 429) or status >= 500:
            retry_after = response.headers.get("retry-after", "")
            if retry_after.isdigit():
                time.sleep(min(float(retry_after), _MAX_RETRY_AFTER_S))
            raise _Retry(f"{due.url}: HTTP {status}", status)
        return Delivery("failed", status, attempt, f"refused: HTTP {status}")


__all__ = ["CallbackSender", "Delivery", "SigningKeys", "sign", "verify"]
