"""docstreams-dev's own errors: DocstreamsErrors, so the CLI prints them as one red line."""

from __future__ import annotations

from streams.errors import DocstreamsError


class MissingToolError(DocstreamsError):
    """A program the local stack needs (Java, Maven, Go) is absent or too old."""


class StackError(DocstreamsError):
    """A local stack service could not be installed, started or stopped."""
