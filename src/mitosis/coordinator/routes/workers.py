"""Workers as users see them (routes 37-47)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Response

from mitosis.coordinator.auth import User, current_user
from mitosis.coordinator.routes import ctx_of, empty, path_uuid
from mitosis.coordinator.services import workers
from mitosis.wire import models as m
from mitosis.wire.enums import WorkerShutdownOp

router = APIRouter(prefix="/workers")


@router.post("", response_model=m.RegisterWorkerResp)
async def register(
    req: m.RegisterWorkerReq, request: Request, user: User = Depends(current_user)
) -> m.RegisterWorkerResp:
    ctx = ctx_of(request)
    return await workers.register(
        ctx.engine,
        ctx.tokens,
        ctx.notifier,
        user,
        req,
        ctx.settings.access_token_expires_in,
        ctx.redis_worker_url,
    )


@router.post("/query", response_model=m.WorkersQueryResp)
async def query(
    req: m.WorkersQueryReq, request: Request, user: User = Depends(current_user)
) -> m.WorkersQueryResp:
    ctx = ctx_of(request)
    return await workers.query(ctx.engine, user, req, ctx.settings.max_query_rows)


@router.post("/shutdown", response_model=m.WorkersShutdownByFilterResp)
async def shutdown_many(
    req: m.WorkersShutdownByFilterReq, request: Request, user: User = Depends(current_user)
) -> m.WorkersShutdownByFilterResp:
    ctx = ctx_of(request)
    return await workers.shutdown_by_filter(ctx.engine, ctx.notifier, user, req)


@router.post("/shutdown/list", response_model=m.WorkersShutdownByUuidsResp)
async def shutdown_list(
    req: m.WorkersShutdownByUuidsReq, request: Request, user: User = Depends(current_user)
) -> m.WorkersShutdownByUuidsResp:
    ctx = ctx_of(request)
    return await workers.shutdown_by_uuids(ctx.engine, ctx.notifier, user, req)


@router.get("/{worker_uuid}", response_model=m.WorkerQueryResp)
async def get(worker_uuid: str, request: Request, user: User = Depends(current_user)) -> m.WorkerQueryResp:
    return await workers.get_worker(ctx_of(request).engine, user, path_uuid(worker_uuid))


@router.delete("/{worker_uuid}", response_class=Response)
async def cancel(
    worker_uuid: str,
    request: Request,
    op: WorkerShutdownOp = Query(default=WorkerShutdownOp.Graceful),
    user: User = Depends(current_user),
) -> Response:
    ctx = ctx_of(request)
    await workers.cancel_worker(ctx.engine, ctx.notifier, user, path_uuid(worker_uuid), op)
    return empty()


@router.put("/{worker_uuid}/tags", response_class=Response)
async def replace_tags(
    worker_uuid: str, req: m.ReplaceWorkerTagsReq, request: Request, user: User = Depends(current_user)
) -> Response:
    ctx = ctx_of(request)
    await workers.replace_tags_or_labels(
        ctx.engine, ctx.notifier, user, path_uuid(worker_uuid), "tags", req.tags
    )
    return empty()


@router.put("/{worker_uuid}/labels", response_class=Response)
async def replace_labels(
    worker_uuid: str, req: m.ReplaceWorkerLabelsReq, request: Request, user: User = Depends(current_user)
) -> Response:
    ctx = ctx_of(request)
    await workers.replace_tags_or_labels(
        ctx.engine, ctx.notifier, user, path_uuid(worker_uuid), "labels", req.labels
    )
    return empty()


@router.put("/{worker_uuid}/groups", response_class=Response)
async def update_groups(
    worker_uuid: str, req: m.UpdateGroupWorkerRoleReq, request: Request, user: User = Depends(current_user)
) -> Response:
    ctx = ctx_of(request)
    await workers.update_groups(ctx.engine, ctx.notifier, user, path_uuid(worker_uuid), req.relations)
    return empty()


@router.delete("/{worker_uuid}/groups", response_class=Response)
async def remove_groups_query(
    worker_uuid: str,
    request: Request,
    groups: list[str] = Query(default=[]),
    user: User = Depends(current_user),
) -> Response:
    await workers.remove_groups(
        ctx_of(request).engine, user, path_uuid(worker_uuid), list(dict.fromkeys(groups))
    )
    return empty()


@router.delete("/{worker_uuid}/groups/remove", response_class=Response)
async def remove_groups_body(
    worker_uuid: str, req: m.RemoveGroupWorkerRoleReq, request: Request, user: User = Depends(current_user)
) -> Response:
    await workers.remove_groups(ctx_of(request).engine, user, path_uuid(worker_uuid), req.groups)
    return empty()
