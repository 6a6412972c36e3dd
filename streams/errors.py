"""The exceptions docstreams raises on purpose; foreign errors are translated into these."""

from __future__ import annotations

import re


class DocstreamsError(Exception):
    """Base of every error docstreams raises on purpose."""


class PoisonInput(DocstreamsError):
    """Input that can never be processed (corrupt, unsupported, refused): dead-letter it now."""


class ResourceLimitExceeded(PoisonInput):
    """An input that needs more than a limit allows (memory, time, pages, text per page,
    decompressed size): dead-lettered with ``reason: resource_limit: <limit>: <detail>``."""

    def __init__(self, limit: str, detail: str) -> None:
        super().__init__(f"resource_limit: {limit}: {detail}")
        self.limit = limit
        self.detail = detail

    def __reduce__(self) -> tuple[object, ...]:  # raised in the parser's child, pickled back
        return (type(self), (self.limit, self.detail))


class TransientError(DocstreamsError):
    """A failure worth retrying (network, 5xx); dead-lettered once retries are exhausted."""


class DownstreamUnavailable(DocstreamsError):
    """A system the stage writes to is down or pushing back (Weaviate, a provider's rate limit).

    Not the input's fault: the runner aborts the batch, pauses its partitions for
    ``retry_after_s`` and tries again; the input is never dead-lettered for this.
    """

    def __init__(self, message: str, retry_after_s: float = 5.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def __reduce__(self) -> tuple[object, ...]:  # raised in the parser's child, pickled back
        return (type(self), (str(self), self.retry_after_s))


class ProviderRefused(DownstreamUnavailable):
    """A provider refuses for a reason retries cannot fix (quota exhausted, bad credentials):
    the stage pauses until a probe after ``retry_after_s`` (or an operator) finds it fixed."""

    def __init__(self, message: str, reason: str, retry_after_s: float) -> None:
        super().__init__(message, retry_after_s)
        self.reason = reason

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.reason, self.retry_after_s))


class FatalRunnerError(DocstreamsError):
    """The process must exit (fenced by a newer instance, misconfiguration)."""


# What a reason must not carry to a caller or an operator's DLQ: a server path (an absolute
# path, not the tail of a URL or of "audio/video"), a traceback, credentials.
_FILE_URL = re.compile(r"(?i)\bfile://[^\s'\"]*")
_SERVER_PATH = re.compile(r"(?<![\w.:/~-])~?/[^\s'\"(),:;\[\]{}<>|]+")
_URL_CREDENTIALS = re.compile(r"(://)[^/@\s'\"]+@")
_QUERY_VALUE = re.compile(r"([?&][^=&\s'\"#]+=)[^&\s'\"#:]+")  # signed URLs sign in the query
_TOKEN = re.compile(r"(?i)\b(bearer\s+|sk-)[\w.~+/=-]{6,}")
_TRACEBACK = "Traceback (most recent call last)"


def public_reason(error: BaseException, limit: int = 4000) -> str:
    """What went wrong, fit for the caller (callback, status) and the dead-letter topic: the
    error's own message with server paths, tracebacks and credentials taken out."""
    text = str(error) or type(error).__name__
    if _TRACEBACK in text:  # a foreign library's message may embed one: keep its last line
        text = text.strip().splitlines()[-1]
    text = _FILE_URL.sub("file://<path>", text)
    text = _SERVER_PATH.sub("<path>", text)
    text = _URL_CREDENTIALS.sub(r"\1***@", text)
    text = _QUERY_VALUE.sub(r"\1***", text)
    text = _TOKEN.sub(r"\1***", text)
    return text[:limit]


__all__ = [
    "DocstreamsError",
    "DownstreamUnavailable",
    "FatalRunnerError",
    "PoisonInput",
    "ProviderRefused",
    "ResourceLimitExceeded",
    "TransientError",
    "public_reason",
]
