"""Blobs in a local directory, moved through URLs that the coordinator signs and serves itself.

Objects live at ``<root>/<bucket>/<key>``. Uploads are written to a temporary file in the target's
directory, fsynced and renamed over the target, so a reader sees either the old object or the whole
new one, an interrupted upload leaves nothing behind, and the last of several concurrent uploads to
one key wins. The HTTP side lives in ``mitosis.coordinator.routes.blobs``; this module owns the
layout on disk, URL signing and the byte streams.

Keys are checked before they become paths: no absolute paths, no ``.``/``..`` or empty segments, no
NUL, valid UTF-8. Presigning such a key raises InvalidBlobKey; since no object can exist under it,
``delete`` ignores it and ``stat`` reports it missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import stat as stat_mode
import time
from collections.abc import AsyncIterable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, urlencode

from mitosis.coordinator.blobs import signing
from mitosis.coordinator.blobs.base import BUCKETS, BlobError, Bucket, InvalidBlobKey

_WRITE_BATCH = 1 << 20
READ_CHUNK = 1 << 20
_TEMP_PREFIX = ".mito-upload-"


class BodyLengthMismatch(BlobError):
    """The uploaded body was shorter or longer than the signed Content-Length."""


def check_key(key: str) -> None:
    """Raise InvalidBlobKey unless `key` maps to a path strictly inside its bucket directory."""
    if not key:
        raise InvalidBlobKey("Blob key must not be empty")
    if "\x00" in key:
        raise InvalidBlobKey("Blob key must not contain NUL characters")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidBlobKey("Blob key must be valid UTF-8")
    if key.startswith("/"):
        raise InvalidBlobKey(f"Blob key {key!r} must be relative (no leading '/')")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidBlobKey(f"Blob key {key!r} must not contain empty, '.' or '..' path segments")


def _check_bucket(bucket: str) -> None:
    if bucket not in BUCKETS:
        raise InvalidBlobKey(f"Unknown bucket {bucket!r}")


class FsBlobStore:
    def __init__(self, root: Path, public_url: str, secret: bytes) -> None:
        if not secret:
            raise ValueError("FsBlobStore needs a non-empty signing secret")
        self.root = Path(root)
        self.public_url = public_url.rstrip("/")
        self._secret = secret

    def path_for(self, bucket: str, key: str) -> Path:
        _check_bucket(bucket)
        check_key(key)
        return self.root / bucket / key

    async def start(self) -> None:
        def make_dirs() -> None:
            for bucket in BUCKETS:
                (self.root / bucket).mkdir(parents=True, exist_ok=True)

        try:
            await asyncio.to_thread(make_dirs)
        except OSError as exc:
            raise BlobError(f"Cannot create blob directories under {self.root}: {exc.strerror}") from exc

    async def close(self) -> None:
        return None

    def _url(
        self, method: signing.Method, bucket: Bucket, key: str, expires_in: int, length: int | None
    ) -> str:
        self.path_for(bucket, key)
        expires = int(time.time()) + expires_in
        query = signing.sign_query(self._secret, method, bucket, key, expires, length)
        return f"{self.public_url}/blobs/{bucket}/{quote(key, safe='/')}?{urlencode(query)}"

    async def presign_put(self, bucket: Bucket, key: str, content_length: int, expires_in: int) -> str:
        if content_length < 0:
            raise InvalidBlobKey(f"Invalid content length {content_length}")
        return self._url("PUT", bucket, key, expires_in, content_length)

    async def presign_get(self, bucket: Bucket, key: str, expires_in: int) -> str:
        return self._url("GET", bucket, key, expires_in, None)

    def verify(
        self, method: signing.Method, bucket: str, key: str, query: Mapping[str, str]
    ) -> signing.Grant:
        """Raise signing.SignatureError unless `query` signs `method` on this bucket and key."""
        return signing.verify(self._secret, method, bucket, key, query)

    def _delete_sync(self, bucket: Bucket, keys: Sequence[str]) -> None:
        bucket_dir = self.root / bucket
        for key in keys:
            try:
                path = self.path_for(bucket, key)
            except InvalidBlobKey:
                continue
            try:
                path.unlink()
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                continue
            except OSError as exc:
                raise BlobError(f"Cannot delete {bucket}/{key}: {exc.strerror}") from exc
            parent = path.parent
            while parent != bucket_dir:
                try:
                    parent.rmdir()
                except OSError:
                    break
                parent = parent.parent

    async def delete(self, bucket: Bucket, key: str) -> None:
        await asyncio.to_thread(self._delete_sync, bucket, [key])

    async def delete_many(self, bucket: Bucket, keys: Sequence[str]) -> None:
        await asyncio.to_thread(self._delete_sync, bucket, list(keys))

    async def stat(self, bucket: Bucket, key: str) -> int | None:
        try:
            path = self.path_for(bucket, key)
        except InvalidBlobKey:
            return None
        try:
            info = await asyncio.to_thread(os.stat, path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise BlobError(f"Cannot stat {bucket}/{key}: {exc.strerror}") from exc
        return info.st_size if stat_mode.S_ISREG(info.st_mode) else None

    def open_read(self, bucket: str, key: str) -> tuple[BinaryIO, int] | None:
        """An open file and its size, or None when there is no such object. Blocking: call in a thread."""
        path = self.path_for(bucket, key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError as exc:
            raise BlobError(f"Cannot read {bucket}/{key}: {exc.strerror}") from exc
        info = os.fstat(fd)
        if not stat_mode.S_ISREG(info.st_mode):
            os.close(fd)
            return None
        return os.fdopen(fd, "rb", buffering=0), info.st_size

    @staticmethod
    def _open_temp(directory: Path) -> tuple[BinaryIO, Path]:
        # A concurrent delete may prune the directory between mkdir and open; try again then.
        for attempt in range(3):
            directory.mkdir(parents=True, exist_ok=True)
            temp = directory / f"{_TEMP_PREFIX}{secrets.token_hex(8)}.part"
            try:
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            except FileNotFoundError:
                if attempt == 2:
                    raise
                continue
            return os.fdopen(fd, "wb"), temp
        raise AssertionError("unreachable")

    @staticmethod
    def _commit(handle: BinaryIO, temp: Path, target: Path) -> None:
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        os.replace(temp, target)
        dir_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    async def write(self, bucket: str, key: str, length: int, chunks: AsyncIterable[bytes]) -> None:
        """Store exactly `length` bytes from `chunks` as the object, atomically.

        Raises BodyLengthMismatch when the stream is shorter or longer than `length`, BlobError when
        the disk refuses; in every failure the previous object (if any) is untouched and no
        temporary file remains.
        """
        target = self.path_for(bucket, key)
        try:
            handle, temp = await asyncio.to_thread(self._open_temp, target.parent)
        except OSError as exc:
            raise BlobError(f"Cannot store {bucket}/{key}: {exc.strerror}") from exc
        try:
            received = 0
            pending: list[bytes] = []
            pending_size = 0
            async for chunk in chunks:
                received += len(chunk)
                if received > length:
                    raise BodyLengthMismatch(f"Request body is longer than the signed length {length}")
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= _WRITE_BATCH:
                    await asyncio.to_thread(handle.write, b"".join(pending))
                    pending.clear()
                    pending_size = 0
            if received != length:
                raise BodyLengthMismatch(
                    f"Request body has {received} bytes but the signed length is {length}"
                )
            if pending:
                await asyncio.to_thread(handle.write, b"".join(pending))
            await asyncio.to_thread(self._commit, handle, temp, target)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                handle.close()
            temp.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise BlobError(f"Cannot store {bucket}/{key}: {exc.strerror}") from exc
            raise
