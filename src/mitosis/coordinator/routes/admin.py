"""Admin routes (55-64) except the attachment delete, which lives with attachments."""

from __future__ import annotations

import hmac
import os
import signal

from fastapi import APIRouter, Depends, Query, Request, Response

from mitosis.coordinator import errors
from mitosis.coordinator.auth import User, current_admin
from mitosis.coordinator.routes import ctx_of, empty, path_content_type, path_uuid
from mitosis.coordinator.services import accounts, artifacts, retention, workers
from mitosis.wire import models as m
from mitosis.wire.enums import UserState, WorkerShutdownOp

router = APIRouter(prefix="/admin")


@router.post("/users", response_class=Response)
async def create_user(req: m.CreateUserReq, request: Request, _: User = Depends(current_admin)) -> Response:
    await accounts.admin_create_user(ctx_of(request).engine, req)
    return empty()


@router.delete("/users/{username}", response_model=m.UserStateResp)
async def delete_user(username: str, request: Request, _: User = Depends(current_admin)) -> m.UserStateResp:
    return m.UserStateResp(
        state=await accounts.admin_set_state(ctx_of(request).engine, username, UserState.Deleted)
    )


@router.post("/users/{username}/password", response_class=Response)
async def change_password(
    username: str, req: m.AdminChangePasswordReq, request: Request, _: User = Depends(current_admin)
) -> Response:
    await accounts.admin_change_password(ctx_of(request).engine, username, req)
    return empty()


@router.post("/users/{username}/group-quota", response_model=m.UserGroupQuotaResp)
async def group_quota(
    username: str, req: m.ChangeUserGroupQuota, request: Request, _: User = Depends(current_admin)
) -> m.UserGroupQuotaResp:
    return m.UserGroupQuotaResp(
        group_quota=await accounts.admin_group_quota(ctx_of(request).engine, username, req.group_quota)
    )


@router.post("/users/{username}/state", response_model=m.UserStateResp)
async def user_state(
    username: str, req: m.ChangeUserStateReq, request: Request, _: User = Depends(current_admin)
) -> m.UserStateResp:
    return m.UserStateResp(state=await accounts.admin_set_state(ctx_of(request).engine, username, req.state))


@router.post("/groups/{group_name}/storage-quota", response_model=m.GroupStorageQuotaResp)
async def storage_quota(
    group_name: str, req: m.ChangeGroupStorageQuotaReq, request: Request, _: User = Depends(current_admin)
) -> m.GroupStorageQuotaResp:
    value = await accounts.admin_storage_quota(ctx_of(request).engine, group_name, req.storage_quota)
    return m.GroupStorageQuotaResp(storage_quota=value)


@router.get("/groups/{group_name}/retention", response_model=m.GroupRetentionResp)
async def get_group_retention(
    group_name: str, request: Request, _: User = Depends(current_admin)
) -> m.GroupRetentionResp:
    """Our addition: how long the group's archived tasks (and their artifacts) are kept."""
    ctx = ctx_of(request)
    return _retention(ctx.settings.retention_days, await accounts.group_retention(ctx.engine, group_name))


@router.post("/groups/{group_name}/retention", response_model=m.GroupRetentionResp)
async def set_group_retention(
    group_name: str, req: m.GroupRetentionReq, request: Request, _: User = Depends(current_admin)
) -> m.GroupRetentionResp:
    """Our addition: set the group's own retention period (``null``: the coordinator's default)."""
    ctx = ctx_of(request)
    days = await accounts.admin_group_retention(ctx.engine, group_name, req.retention_days)
    return _retention(ctx.settings.retention_days, days)


def _retention(default_days: int | None, days: int | None) -> m.GroupRetentionResp:
    return m.GroupRetentionResp(
        retention_days=days, effective_days=retention.effective_days(days, default_days)
    )


@router.delete("/workers/{worker_uuid}", response_class=Response)
@router.delete("/workers/{worker_uuid}/", include_in_schema=False, response_class=Response)
async def cancel_worker(
    worker_uuid: str,
    request: Request,
    op: WorkerShutdownOp = Query(default=WorkerShutdownOp.Graceful),
    admin: User = Depends(current_admin),
) -> Response:
    ctx = ctx_of(request)
    await workers.cancel_worker(ctx.engine, ctx.notifier, admin, path_uuid(worker_uuid), op)
    return empty()


@router.delete("/tasks/{task_uuid}/artifacts/{content_type}", response_class=Response)
async def delete_artifact(
    task_uuid: str, content_type: str, request: Request, _: User = Depends(current_admin)
) -> Response:
    ctx = ctx_of(request)
    await artifacts.delete_artifact(
        ctx.engine, ctx.blobs, None, path_uuid(task_uuid), path_content_type(content_type)
    )
    return empty()


@router.post("/shutdown", response_class=Response)
async def shutdown(req: m.ShutdownReq, request: Request, _: User = Depends(current_admin)) -> Response:
    ctx = ctx_of(request)
    if not hmac.compare_digest(req.secret.encode(), ctx.shutdown_secret.encode()):
        raise errors.permission_denied(
            "wrong shutdown secret (it is printed in the coordinator log at start)"
        )
    # uvicorn drains in-flight requests on SIGTERM: the same path as an operator's signal.
    os.kill(os.getpid(), signal.SIGTERM)
    return empty()
