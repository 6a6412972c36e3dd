"""The blob store: downloaded documents as files, one per tenant/document/sha256.

Keys never contain caller text verbatim: the document id is hashed, so no id or filename can
walk out of the store (``../``, absolute paths, NUL bytes). Partial downloads live beside
their metadata so a restarted download resumes instead of starting again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import orjson

from streams.errors import PoisonInput


def _document_dir(tenant_id: str, document_id: str) -> str:
    digest = hashlib.sha256(f"{tenant_id}\0{document_id}".encode()).hexdigest()[:32]
    return f"{tenant_id}/{digest}"


@dataclass(frozen=True)
class PartialDownload:
    """A download in progress: its bytes so far and what the server said about the object."""

    data: Path
    meta: Path

    def validators(self) -> dict[str, str]:
        try:
            loaded = orjson.loads(self.meta.read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return {}
        return {k: str(v) for k, v in loaded.items() if isinstance(v, str)}

    def save_validators(self, values: dict[str, str]) -> None:
        self.meta.write_bytes(orjson.dumps(values))

    def size(self) -> int:
        try:
            return self.data.stat().st_size
        except FileNotFoundError:
            return 0

    def discard(self) -> None:
        self.data.unlink(missing_ok=True)
        self.meta.unlink(missing_ok=True)


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def partial(self, tenant_id: str, document_id: str) -> PartialDownload:
        folder = self.root / "partial" / _document_dir(tenant_id, document_id)
        folder.mkdir(parents=True, exist_ok=True)
        return PartialDownload(folder / "data.part", folder / "meta.json")

    def commit(
        self, partial: PartialDownload, tenant_id: str, document_id: str, sha256: str
    ) -> str:
        """Move a finished download to its final key (atomic rename); returns the key."""
        key = f"{_document_dir(tenant_id, document_id)}/{sha256}"
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        partial.data.replace(final)
        partial.meta.unlink(missing_ok=True)
        return key

    def path(self, key: str) -> Path:
        resolved = (self.root / "objects" / key).resolve()
        if not resolved.is_relative_to((self.root / "objects").resolve()):
            raise PoisonInput(f"blob key {key!r} points outside the blob store")
        return resolved

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def document_files(self, tenant_id: str, document_id: str) -> list[Path]:
        """Every file kept for a document: its versions and any partial download."""
        folders = [self.root / area / _document_dir(tenant_id, document_id)
                   for area in ("objects", "partial")]  # fmt: skip
        return [f for folder in folders if folder.is_dir() for f in folder.iterdir() if f.is_file()]

    def delete_document(self, tenant_id: str, document_id: str) -> int:
        """Remove every file kept for a document; returns how many."""
        files = self.document_files(tenant_id, document_id)
        for file in files:
            file.unlink(missing_ok=True)
        return len(files)

    def delete(self, key: str) -> bool:
        """Remove a blob; False if it was already gone (deleting twice is fine)."""
        try:
            self.path(key).unlink()
        except FileNotFoundError:
            return False
        return True
