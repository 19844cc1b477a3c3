"""What the media service needs of a blob store; two adapters: local files (local.py)
and S3 (s3.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


class MediaError(Exception):
    """A media request refused: the HTTP status, the contract's code and a message (the
    service's refusals, and the embedded store's signed routes')."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class UploadIncomplete(Exception):
    """The store does not hold every byte of the upload (a part missing, none at all)."""


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """A request a client makes straight to the store: this URL, these headers."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)


class BlobStore(Protocol):
    """Blobs by key. URLs are made for ``base_url`` (the API's own, as the client
    reached it), which a store with public URLs of its own ignores."""

    async def upload_url(
        self, key: str, content_type: str, size: int, expires_s: float, base_url: str
    ) -> SignedRequest:
        """A single PUT of exactly ``size`` bytes with this ``content_type``."""
        ...

    async def start_multipart(self, key: str, content_type: str) -> str:
        """A multipart upload's id."""
        ...

    async def part_urls(
        self,
        key: str,
        upload_id: str,
        sizes: Sequence[int],
        expires_s: float,
        base_url: str,
    ) -> list[SignedRequest]:
        """A PUT per part (numbered from 1), each of exactly its size."""
        ...

    async def done_parts(self, key: str, upload_id: str) -> dict[int, str]:
        """The parts the store holds, part number -> ETag."""
        ...

    async def complete_multipart(
        self, key: str, upload_id: str, parts: Sequence[tuple[int, str]]
    ) -> None:
        """Join the parts into the blob; :class:`UploadIncomplete` when one is missing."""
        ...

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        """Drop a multipart upload and the parts it holds (an unknown one is fine)."""
        ...

    async def size_of(self, key: str) -> int | None:
        """The blob's size; None when there is none."""
        ...

    async def head(self, key: str, length: int) -> bytes:
        """The first ``length`` bytes (fewer for a shorter blob)."""
        ...

    async def sha256(self, key: str) -> str:
        """The lowercase hex SHA-256 of the blob, read as a stream."""
        ...

    async def read(self, key: str) -> bytes:
        """The whole blob (small ones only: a thumbnail's source)."""
        ...

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` as the blob ``key`` (small ones: a thumbnail)."""
        ...

    async def download_url(
        self, key: str, content_type: str, expires_s: float, base_url: str
    ) -> str:
        """A GET URL for the blob, served with ``content_type``, valid for ``expires_s``."""
        ...

    async def delete(self, keys: Sequence[str]) -> None:
        """Delete the blobs (missing ones are fine)."""
        ...

    async def close(self) -> None:
        """Release the store's clients."""
        ...
