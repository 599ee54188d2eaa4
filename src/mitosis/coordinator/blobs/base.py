"""The blob store contract shared by the filesystem and S3 implementations.

A blob store keeps the bytes of artifacts and attachments in two logical buckets and hands out
time-limited URLs through which workers and clients move those bytes directly; the coordinator
itself only creates buckets, deletes objects and asks for sizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, get_args

Bucket = Literal["artifacts", "attachments"]
BUCKETS: tuple[Bucket, ...] = get_args(Bucket)


class BlobError(Exception):
    """A storage operation failed (callers answer 500)."""


class InvalidBlobKey(BlobError, ValueError):
    """The key cannot be stored safely, e.g. it contains `..` or empty segments (callers may answer 400)."""


class BlobStore(Protocol):
    async def start(self) -> None:
        """Create the buckets (or directories) if they are missing."""

    async def close(self) -> None:
        """Release connections and other resources."""

    async def presign_put(self, bucket: Bucket, key: str, content_length: int, expires_in: int) -> str:
        """A URL that accepts one PUT of `content_length` bytes (sent with only a Content-Length header)."""

    async def presign_get(self, bucket: Bucket, key: str, expires_in: int) -> str:
        """A URL that serves the object to a plain GET."""

    async def delete(self, bucket: Bucket, key: str) -> None:
        """Remove one object; a missing object is not an error."""

    async def delete_many(self, bucket: Bucket, keys: Sequence[str]) -> None:
        """Remove several objects; missing objects are not an error."""

    async def stat(self, bucket: Bucket, key: str) -> int | None:
        """The object's size in bytes, or None when it does not exist."""
