"""Pacing requests to a provider's rate limits: token buckets corrected by its own headers.

A bucket per limit (requests/min, tokens/min) starts from the settings and is overwritten by what
the provider reports after each response (``x-ratelimit-limit-*``, ``-remaining-*``, ``-reset-*``
as OpenAI sends them): the provider's count covers every replica and every other client of the
same key, which no local bucket can know.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from streams.errors import PoisonInput, ProviderRefused, TransientError

log = logging.getLogger(__name__)

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | None) -> float | None:
    """OpenAI's reset durations ("6m0s", "1s", "20ms", "0.5s") or plain seconds, in seconds."""
    if not text:
        return None
    text = text.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """Retry-After (seconds, or OpenAI's retry-after-ms), if the response carried one."""
    if milliseconds := headers.get("retry-after-ms"):
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    return parse_duration(headers.get("retry-after"))


@dataclass
class Bucket:
    """``capacity`` units refilled evenly over a minute; ``None`` capacity: not limited yet."""

    capacity: float | None
    clock: Callable[[], float] = time.monotonic
    level: float = 0.0
    updated: float = 0.0
    refilled_at: float | None = None  # provider said: back to full at this time

    def __post_init__(self) -> None:
        self.level = self.capacity or 0.0
        self.updated = self.clock()

    def _refill(self, now: float) -> None:
        if self.capacity is None:
            return
        if self.refilled_at is not None and now >= self.refilled_at:
            self.level, self.refilled_at = self.capacity, None
        self.level = min(self.capacity, self.level + (now - self.updated) * self.capacity / 60.0)
        self.updated = now

    def wait_s(self, amount: float) -> float:
        """How long until ``amount`` units are there (an amount above capacity: a full bucket)."""
        if self.capacity is None:
            return 0.0
        now = self.clock()
        self._refill(now)
        need = min(amount, self.capacity) - self.level
        if need <= 0:
            return 0.0
        by_rate = need * 60.0 / self.capacity
        if self.refilled_at is not None:
            return min(by_rate, self.refilled_at - now)
        return by_rate

    def take(self, amount: float) -> None:
        self._refill(self.clock())
        self.level -= amount  # may go below zero: an oversized request is paid back over time

    def observe(self, limit: float | None, remaining: float | None, reset_s: float | None) -> None:
        """The provider's own count replaces ours."""
        now = self.clock()
        self._refill(now)
        if limit is not None and limit > 0:
            self.capacity = limit
        if remaining is not None and self.capacity is not None:
            self.level = min(remaining, self.capacity)
            self.refilled_at = now + reset_s if reset_s is not None else None
        self.updated = now


@dataclass
class RateLimiter:
    """Requests/min and tokens/min buckets for one provider key (shared by a process's threads)."""

    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    clock: Callable[[], float] = time.monotonic
    requests: Bucket = field(init=False)
    tokens: Bucket = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self.requests = Bucket(self.requests_per_minute, self.clock)
        self.tokens = Bucket(self.tokens_per_minute, self.clock)

    def wait_s(self, tokens: int) -> float:
        """How long a request of ``tokens`` tokens must wait before it may be sent."""
        with self._lock:
            return max(self.requests.wait_s(1), self.tokens.wait_s(tokens))

    def spend(self, tokens: int) -> None:
        with self._lock:
            self.requests.take(1)
            self.tokens.take(tokens)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Correct both buckets from a response's x-ratelimit-* headers (any that are there)."""
        with self._lock:
            for bucket, kind in ((self.requests, "requests"), (self.tokens, "tokens")):
                bucket.observe(
                    _number(headers.get(f"x-ratelimit-limit-{kind}")),
                    _number(headers.get(f"x-ratelimit-remaining-{kind}")),
                    parse_duration(headers.get(f"x-ratelimit-reset-{kind}")),
                )


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


# --- what an OpenAI-compatible API's error statuses mean --------------------------------------
@dataclass(frozen=True)
class ProviderOutcome:
    kind: str  # the requests metric's outcome label
    error: Exception


class RetryIn(Exception):
    """Worth another try after ``seconds``."""

    def __init__(self, message: str, seconds: float) -> None:
        super().__init__(message)
        self.seconds = seconds


def classify_provider_error(exc: Any, probe_interval_s: float, provider: str) -> ProviderOutcome:
    """What an OpenAI-compatible API's error status means for the stage (``exc``: an
    ``openai.APIStatusError``)."""
    status, code = exc.status_code, exc.code
    if (status == 429 and code == "insufficient_quota") or status in (401, 403, 404):
        # Retrying cannot help: pause until a probe (or an operator) finds it fixed.
        reason = code or {401: "authentication", 403: "permission", 404: "not_found"}[status]
        message = f"{provider} refuses ({reason}): {exc.message}"
        log.error("%s; probing again in %.0fs", message, probe_interval_s)
        return ProviderOutcome("refused", ProviderRefused(message, reason, probe_interval_s))
    if status == 429 or status >= 500:
        wait = retry_after_s(exc.response.headers)
        if wait is None:
            wait = 1.0 if status == 429 else 2.0
        kind = "throttled" if status == 429 else "server_error"
        return ProviderOutcome(kind, RetryIn(f"{provider} {status}: {exc.message}", wait))
    if status in (400, 413, 422):
        return ProviderOutcome("rejected", PoisonInput(f"{provider} refused: {exc.message}"))
    return ProviderOutcome("error", TransientError(f"{provider} error: {exc.message}"))


__all__ = [
    "Bucket",
    "ProviderOutcome",
    "RateLimiter",
    "RetryIn",
    "classify_provider_error",
    "parse_duration",
    "retry_after_s",
]
