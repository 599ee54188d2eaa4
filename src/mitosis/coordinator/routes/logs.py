"""Live logs (our addition): a worker uploads its task's output; users read or tail it.

``POST /workers/tasks/{task}/logs`` (worker token; ``task`` is the task's id from the fetch reply,
or its uuid; the task must be assigned to the caller). Body, either:

* ``Content-Type: application/octet-stream``, the raw bytes, with query ``stream=stdout|stderr``
  and ``offset=N`` (byte offset of the first byte in that stream), or
* JSON ``{"stream": "stdout"|"stderr", "offset": N, "data": "<base64>"}``.

Replies: 200 ``{"stream", "offset"}`` (the stream's stored end: bytes up to it are safe; a retry
of stored bytes also gets 200), 409 ``{"msg", "offset"}`` (``offset`` is past the stored end:
resend from ``offset``), 413 (more than ``live_log_max_request`` bytes), 429 ``{"msg", "offset"}``
with ``Retry-After`` (the task's unread log is at its cap: resend later), 404 (the task is not
assigned to this worker, e.g. already committed or taken away).

``GET /tasks/{uuid}/logs?stream=stdout|stderr|both&offset=N&follow=true`` (user token, Read role in
the task's group): 200 ``application/x-ndjson`` frames (``services/logs.py``), ending with
``{"end": true, "state", "result"}``; with ``follow`` the reply tails new output until the task is
committed. When the task is archived and its ``std-log`` artifact exists the reply is 409
``{"msg", "artifact": "std-log", "state", "result"}``: read the artifact
(``GET /tasks/{uuid}/artifacts/std-log``) instead.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from mitosis.coordinator import errors
from mitosis.coordinator.auth import User, Worker, current_user, current_worker
from mitosis.coordinator.routes import ctx_of, path_uuid
from mitosis.coordinator.services import logs

router = APIRouter()


def _too_large(limit: int) -> errors.ApiError:
    return errors.ApiError(413, f"log upload larger than {limit} bytes; send the output in smaller pieces")


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` (never buffered beyond)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    buf = bytearray()
    async for piece in request.stream():
        buf += piece
        if len(buf) > limit:
            raise _too_large(limit)
    return bytes(buf)


@router.post("/workers/tasks/{task}/logs")
async def upload_log(
    task: str,
    request: Request,
    stream: str | None = Query(default=None),
    offset: int | None = Query(default=None),
    worker: Worker = Depends(current_worker),
) -> JSONResponse:
    ctx = ctx_of(request)
    limit = ctx.settings.live_log_max_request
    if request.headers.get("content-type", "").startswith("application/octet-stream"):
        data = await _body(request, limit)
        if stream is None or offset is None:
            raise errors.invalid("a raw log upload needs the stream and offset query parameters")
    else:
        # base64 is 4/3 of the bytes, plus room for the JSON around it.
        raw = await _body(request, limit * 4 // 3 + 1024)
        try:
            doc = json.loads(raw)
            stream, offset = str(doc["stream"]), int(doc["offset"])
            data = base64.b64decode(doc["data"], validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise errors.invalid(
                'log upload body must be {"stream": "stdout"|"stderr", "offset": N, "data": "<base64>"}'
            ) from None
        if len(data) > limit:
            raise _too_large(limit)
    result = await logs.append(
        ctx.engine, ctx.notifier, worker, task, stream, offset, data, ctx.settings.live_log_task_cap
    )
    if result.status == "gap":
        return JSONResponse(
            {
                "msg": f"offset {offset} is past the stored end of {stream}; resend from there",
                "offset": result.offset,
            },
            status_code=409,
        )
    if result.status == "full":
        return JSONResponse(
            {"msg": "the task's unread log is at its cap; resend later", "offset": result.offset},
            status_code=429,
            headers={"Retry-After": str(logs.RETRY_AFTER_SECONDS)},
        )
    return JSONResponse({"stream": stream, "offset": result.offset})


@router.get("/tasks/{task_uuid}/logs", response_class=StreamingResponse, response_model=None)
async def read_log(
    task_uuid: str,
    request: Request,
    stream: Literal["stdout", "stderr", "both"] = Query(default="both"),
    offset: int = Query(default=0, ge=0),
    follow: bool = Query(default=False),
    user: User = Depends(current_user),
) -> StreamingResponse | JSONResponse:
    ctx = ctx_of(request)
    tid = path_uuid(task_uuid)
    info = await logs.authorize_read(ctx.engine, user, tid)
    if info.archived and info.has_std_log:
        return JSONResponse(
            {
                "msg": f"task {tid} has ended; read its std-log artifact",
                "artifact": "std-log",
                "state": info.state,
                "result": info.result,
            },
            status_code=409,
        )
    streams = logs.STREAMS if stream == "both" else (stream,)
    body = logs.read(
        ctx.engine,
        ctx.notifier,
        tid,
        streams,
        dict.fromkeys(streams, offset),
        follow,
        ctx.settings.event_heartbeat.total_seconds(),
    )
    return StreamingResponse(body, media_type="application/x-ndjson", headers={"Cache-Control": "no-cache"})
