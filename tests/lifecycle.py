"""One document's records from its request to its last window, for the fold's tests."""

from __future__ import annotations

from typing import Any

from streams.fold import TrackedMessage
from streams.messages import (
    DocumentPlanned,
    DocumentSubmitted,
    WindowChunked,
    WindowEmbedded,
    WindowExtracted,
    WindowIndexed,
)

TENANT, DOCUMENT = "acme", "d1"
V1, V2 = "1" * 64, "2" * 64


def lifecycle(
    version: str = V1, windows: int = 2, callback_url: str | None = None
) -> list[TrackedMessage]:
    """A request, its plan (naming the request, as download's does) and every window's events:
    4 chunks and 400 tokens a window."""
    ids: dict[str, Any] = {"tenant_id": TENANT, "document_id": DOCUMENT}
    request = DocumentSubmitted(**ids, source="https://example.org/d1.pdf",
                                callback_url=callback_url)  # fmt: skip
    window: dict[str, Any] = {**ids, "version": version, "window_count": windows}
    messages: list[TrackedMessage] = [
        request,
        DocumentPlanned(**ids, stage="download", version=version, window_count=windows, pages=20,
                        bytes=1000, content_type="application/pdf",
                        submitted_at=request.submitted_at),
    ]  # fmt: skip
    for w in range(windows):
        messages += [
            WindowExtracted(**window, window=w, items=10),
            WindowChunked(**window, window=w, items=4),
            WindowEmbedded(**window, window=w, items=4, tokens=400),
            WindowIndexed(**window, window=w, items=4),
        ]
    return messages
