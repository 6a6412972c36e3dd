"""The exceptions docstreams raises on purpose; foreign errors are translated into these."""

from __future__ import annotations


class DocstreamsError(Exception):
    """Base of every error docstreams raises on purpose."""


class MissingToolError(DocstreamsError):
    """A program the local stack needs (Java, Maven, Go) is absent or too old."""


class StackError(DocstreamsError):
    """A local stack service could not be installed, started or stopped."""


__all__ = ["DocstreamsError", "MissingToolError", "StackError"]
