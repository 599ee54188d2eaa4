"""Serve the filesystem blob store's signed URLs: ``PUT`` and ``GET``/``HEAD`` on ``/blobs/{bucket}/{key}``.

Only the signature in the query string authorises a request (there is no bearer token), exactly like
an S3 presigned URL. When the coordinator runs with S3 these routes answer 404.

After a PUT ends, the storage accounting (``services.storage``) hears of it: a stored object is
booked at once, a failed upload releases the quota its URL reserved.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import BinaryIO

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.requests import ClientDisconnect

from mitosis.coordinator.blobs import signing
from mitosis.coordinator.blobs.base import BUCKETS, BlobError, InvalidBlobKey
from mitosis.coordinator.blobs.fs import READ_CHUNK, BodyLengthMismatch, FsBlobStore
from mitosis.coordinator.services import storage

logger = logging.getLogger(__name__)

router = APIRouter()


def _error(status: int, msg: str) -> JSONResponse:
    return JSONResponse({"msg": msg}, status_code=status)


def _store(request: Request) -> FsBlobStore | None:
    ctx = getattr(request.app.state, "ctx", None)
    store = getattr(ctx, "blobs", None)
    return store if isinstance(store, FsBlobStore) else None


def _authorise(
    request: Request, method: signing.Method, bucket: str, key: str
) -> tuple[FsBlobStore, signing.Grant] | JSONResponse:
    store = _store(request)
    if store is None or bucket not in BUCKETS:
        return _error(404, f"Blob {bucket}/{key} not found")
    try:
        store.path_for(bucket, key)
        grant = store.verify(method, bucket, key, request.query_params)
    except InvalidBlobKey:
        return _error(403, signing.INVALID_MSG)
    except signing.SignatureError as exc:
        return _error(403, str(exc))
    return store, grant


@router.put("/blobs/{bucket}/{key:path}", include_in_schema=False)
async def put_blob(bucket: str, key: str, request: Request) -> Response:
    authorised = _authorise(request, "PUT", bucket, key)
    if isinstance(authorised, JSONResponse):
        return authorised
    store, grant = authorised
    assert grant.length is not None
    header = request.headers.get("content-length")
    if header is None:
        return _error(411, f"Process request error: send a Content-Length header of {grant.length}")
    if not header.isascii() or not header.isdigit():
        return _error(400, f"Process request error: invalid Content-Length {header!r}")
    if int(header) != grant.length:
        return _error(
            400,
            f"Process request error: Content-Length {header} does not match the signed length {grant.length}",
        )
    try:
        await store.write(bucket, key, grant.length, request.stream())
    except BodyLengthMismatch as exc:
        await _account(request, bucket, key, grant.length, stored=False)
        return _error(400, f"Process request error: {exc}")
    except ClientDisconnect:
        logger.info("upload of %s/%s interrupted by the client; nothing stored", bucket, key)
        await _account(request, bucket, key, grant.length, stored=False)
        return Response(status_code=400)
    except BlobError as exc:
        logger.error("upload of %s/%s failed: %s", bucket, key, exc)
        await _account(request, bucket, key, grant.length, stored=False)
        return _error(500, "Internal server error")
    await _account(request, bucket, key, grant.length, stored=True)
    return Response(status_code=200)


async def _account(request: Request, bucket: str, key: str, length: int, *, stored: bool) -> None:
    """Tell the storage accounting how the upload ended. Its failure never fails the PUT: the bytes are
    stored (or not) either way, and the reservation left behind is settled on the next access."""
    ctx = request.app.state.ctx
    engine = getattr(ctx, "engine", None)
    if engine is None:  # a bare blob server (tests of the store alone) keeps no books
        return
    try:
        if stored:
            await storage.upload_completed(engine, ctx.blobs, bucket, key, length)
        else:
            await storage.upload_abandoned(engine, bucket, key, length)
    except Exception as exc:
        logger.warning("accounting for the upload of %s/%s failed: %s", bucket, key, exc)


async def _chunks(handle: BinaryIO, remaining: int) -> AsyncIterator[bytes]:
    try:
        while remaining > 0 and (chunk := await asyncio.to_thread(handle.read, min(READ_CHUNK, remaining))):
            remaining -= len(chunk)
            yield chunk
    finally:
        handle.close()


@router.api_route("/blobs/{bucket}/{key:path}", methods=["GET", "HEAD"], include_in_schema=False)
async def get_blob(bucket: str, key: str, request: Request) -> Response:
    authorised = _authorise(request, "GET", bucket, key)
    if isinstance(authorised, JSONResponse):
        return authorised
    store, _ = authorised
    try:
        opened = await asyncio.to_thread(store.open_read, bucket, key)
    except BlobError as exc:
        logger.error("download of %s/%s failed: %s", bucket, key, exc)
        return _error(500, "Internal server error")
    if opened is None:
        return _error(404, f"Blob {bucket}/{key} not found")
    handle, size = opened
    headers = {"content-length": str(size), "accept-ranges": "bytes"}
    status = 200
    wanted = _byte_range(request.headers.get("range"), size)
    if wanted == "unsatisfiable":
        handle.close()
        return Response(status_code=416, headers={"content-range": f"bytes */{size}"})
    if isinstance(wanted, tuple):
        # A resumed download (the SDK's `.part` files) asks for the rest of the object.
        start, end = wanted
        await asyncio.to_thread(handle.seek, start)
        status = 206
        headers = {
            "content-length": str(end - start + 1),
            "content-range": f"bytes {start}-{end}/{size}",
            "accept-ranges": "bytes",
        }
    if request.method == "HEAD":
        handle.close()
        return Response(status_code=status, headers=headers, media_type="application/octet-stream")
    remaining = int(headers["content-length"])
    return StreamingResponse(
        _chunks(handle, remaining), status_code=status, headers=headers, media_type="application/octet-stream"
    )


def _byte_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """One ``bytes=START-[END]`` or ``bytes=-SUFFIX`` range; anything else serves the whole object."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, sep, last = header[len("bytes=") :].strip().partition("-")
    if (
        not sep
        or not (first or last)
        or not (first.isdigit() or not first)
        or not (last.isdigit() or not last)
    ):
        return None
    if not first:
        length = int(last)
        if length == 0:
            return "unsatisfiable"
        return max(0, size - length), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        return "unsatisfiable"
    return start, end
