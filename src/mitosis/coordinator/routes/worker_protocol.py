"""The worker protocol (routes 48-53, worker token) plus our long-poll and signals additions.

``GET /workers/tasks`` answers at once as in 0.6.8; with ``?wait=<duration>`` it holds the request
until a matching task is submitted or the wait ends. ``POST /workers/batch`` is the batched form of
the protocol (commit many, claim many) that our worker uses for short tasks. ``GET /workers/signals`` tells a worker which of
its tasks to stop (a user cancelled it, or the coordinator took it away).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from mitosis.coordinator import errors
from mitosis.coordinator.auth import Worker, current_worker
from mitosis.coordinator.db.tables import active_tasks, upload_reservations
from mitosis.coordinator.routes import ctx_of, null, path_content_type, path_uuid
from mitosis.coordinator.services import artifacts, exchange, workers
from mitosis.coordinator.services.tasks import find_task
from mitosis.wire import models as m
from mitosis.wire.codecs import DurationError, parse_duration
from mitosis.wire.enums import ArtifactContentType

router = APIRouter(prefix="/workers")


def _wait_seconds(request: Request, wait: str | None) -> float:
    if wait is None:
        return 0.0
    try:
        seconds = parse_duration(wait).total_seconds()
    except DurationError as exc:
        raise errors.invalid(str(exc)) from None
    return min(seconds, ctx_of(request).settings.max_long_poll.total_seconds())


@router.delete("")
async def unregister(request: Request, worker: Worker = Depends(current_worker)) -> Response:
    ctx = ctx_of(request)
    await workers.unregister(ctx.engine, ctx.notifier, worker)
    return null()


@router.post("/heartbeat")
async def heartbeat(request: Request, worker: Worker = Depends(current_worker)) -> Response:
    await workers.heartbeat(ctx_of(request).engine, worker)
    return null()


@router.get("/tasks", response_model=m.WorkerTaskResp | None)
async def fetch(
    request: Request,
    wait: str | None = Query(default=None, description="long-poll: hold up to this duration (e.g. 30s)"),
    worker: Worker = Depends(current_worker),
) -> Response:
    ctx = ctx_of(request)
    task = await workers.fetch(
        ctx.engine, ctx.notifier, worker, _wait_seconds(request, wait), request.is_disconnected
    )
    if task is None:
        return null()
    return JSONResponse(task.model_dump(mode="json"))


@router.get("/signals", response_model=m.WorkerSignalsResp)
async def signals(
    request: Request,
    wait: str | None = Query(default=None),
    task: int | None = Query(default=None, description="the task the worker is running"),
    worker: Worker = Depends(current_worker),
) -> m.WorkerSignalsResp:
    ctx = ctx_of(request)
    return await workers.signals(
        ctx.engine, ctx.notifier, worker, _wait_seconds(request, wait), task, request.is_disconnected
    )


@router.post("/tasks", response_model=m.ReportTaskResp)
async def report(
    req: m.ReportTaskReq, request: Request, worker: Worker = Depends(current_worker)
) -> m.ReportTaskResp:
    ctx = ctx_of(request)

    async def upload(conn: AsyncConnection, task: Any, content_type: ArtifactContentType, length: int) -> str:
        _, url = await artifacts.upload_url(
            conn, ctx.blobs, task.uuid, task.id, task.group_id, content_type, length
        )
        return url

    if isinstance(req.op, m.CommitOp):
        # The common commit (no downstream task, no upload to book) is one statement on PostgreSQL.
        if await exchange.commit_report(ctx.engine, ctx.notifier, worker, req.id, req.op.Commit):
            return m.ReportTaskResp(url=None)
        # Book artifacts uploaded straight to S3 before the task is archived with them. Most tasks
        # have no pending upload: one look, outside any transaction, finds that out.
        async with ctx.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            found = (
                await conn.execute(
                    select(active_tasks.c.uuid)
                    .join(upload_reservations, upload_reservations.c.task_uuid == active_tasks.c.uuid)
                    .where(active_tasks.c.id == req.id, upload_reservations.c.bucket == "artifacts")
                    .limit(1)
                )
            ).first()
        if found is not None:
            await artifacts.settle_artifact(ctx.engine, ctx.blobs, found.uuid)
    return await workers.report(ctx.engine, ctx.notifier, worker, req, upload)


@router.post("/batch", response_model=m.WorkerBatchResp)
async def batch(
    req: m.WorkerBatchReq, request: Request, worker: Worker = Depends(current_worker)
) -> m.WorkerBatchResp:
    """Our addition: commit ended tasks, give back unstarted ones and claim new ones in one request."""
    ctx = ctx_of(request)
    return await exchange.exchange(
        ctx.engine,
        ctx.blobs,
        ctx.notifier,
        worker,
        req,
        ctx.settings.max_long_poll.total_seconds(),
        request.is_disconnected,
    )


@router.get("/tasks/{task_uuid}", response_model=m.TaskQueryResp)
async def get_task(
    task_uuid: str, request: Request, worker: Worker = Depends(current_worker)
) -> m.TaskQueryResp:
    return await workers.worker_get_task(ctx_of(request).engine, worker, path_uuid(task_uuid))


@router.get("/tasks/{task_uuid}/artifacts/{content_type}", response_model=m.RemoteResourceDownloadResp)
async def artifact_url(
    task_uuid: str, content_type: str, request: Request, worker: Worker = Depends(current_worker)
) -> m.RemoteResourceDownloadResp:
    ctx = ctx_of(request)
    tid = path_uuid(task_uuid)
    # An S3 upload that just finished is booked only when settled (S3 reports no completions).
    await artifacts.settle_artifact(ctx.engine, ctx.blobs, tid)
    async with ctx.engine.connect() as conn:
        row = await find_task(conn, tid)
        if row is None:
            raise errors.not_found(f"Task with uuid {tid}")
        await workers.require_worker_serves(conn, worker, row.group_id, row.group_name)
        return await artifacts.download(conn, ctx.blobs, tid, path_content_type(content_type))
