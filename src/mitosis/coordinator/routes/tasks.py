"""Tasks and their artifacts (routes 21-36)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from mitosis.coordinator import errors
from mitosis.coordinator.auth import TokenClaims, User, current_user, user_token
from mitosis.coordinator.routes import ctx_of, empty, path_content_type, path_uuid
from mitosis.coordinator.services import artifacts, tasks
from mitosis.wire import models as m

router = APIRouter(prefix="/tasks")


@router.post("", response_model=m.SubmitTaskResp)
async def submit(
    req: m.SubmitTaskReq, request: Request, claims: TokenClaims = Depends(user_token)
) -> m.SubmitTaskResp:
    ctx = ctx_of(request)
    # One round trip when the user, the spec and the group all check out (PostgreSQL); otherwise
    # the usual user check, then the usual submission, which raise the errors in 0.6.8's order.
    done = await tasks.submit_with_token(ctx.engine, ctx.notifier, claims.sub, claims.sign, req)
    if done is not None:
        return done
    user = await current_user(request)
    return await tasks.submit_checked(ctx.engine, ctx.notifier, user, req)


@router.post("/submit", response_model=m.TasksSubmitResp)
async def submit_many(
    req: m.TasksSubmitReq, request: Request, user: User = Depends(current_user)
) -> m.TasksSubmitResp:
    ctx = ctx_of(request)
    return await tasks.submit_many(ctx.engine, ctx.notifier, user, req.tasks)


@router.post("/query", response_model=m.TasksQueryResp)
async def query(
    req: m.TasksQueryReq, request: Request, user: User = Depends(current_user)
) -> m.TasksQueryResp:
    ctx = ctx_of(request)
    return await tasks.query(ctx.engine, user, req, ctx.settings.max_query_rows)


@router.post("/cancel", response_model=m.TasksCancelByFilterResp)
async def cancel_many(
    req: m.TasksCancelByFilterReq, request: Request, user: User = Depends(current_user)
) -> m.TasksCancelByFilterResp:
    ctx = ctx_of(request)
    return await tasks.cancel_by_filter(ctx.engine, ctx.notifier, user, req)


@router.post("/cancel/list", response_model=m.TasksCancelByUuidsResp)
async def cancel_list(
    req: m.TasksCancelByUuidsReq, request: Request, user: User = Depends(current_user)
) -> m.TasksCancelByUuidsResp:
    ctx = ctx_of(request)
    return await tasks.cancel_by_uuids(ctx.engine, ctx.notifier, user, req.uuids)


@router.post("/download/artifacts", response_model=m.ArtifactsDownloadListResp)
async def download_by_filter(
    req: m.ArtifactsDownloadByFilterReq, request: Request, user: User = Depends(current_user)
) -> m.ArtifactsDownloadListResp:
    ctx = ctx_of(request)
    return await artifacts.download_by_filter(ctx.engine, ctx.blobs, user, req)


@router.post("/download/artifacts/list", response_model=m.ArtifactsDownloadListResp)
async def download_list(
    req: m.ArtifactsDownloadByUuidsReq, request: Request, user: User = Depends(current_user)
) -> m.ArtifactsDownloadListResp:
    ctx = ctx_of(request)
    if not req.uuids:
        raise errors.invalid("UUIDs list cannot be empty")
    return await artifacts.download_many(ctx.engine, ctx.blobs, user, req.uuids, req.content_type)


@router.post("/delete/artifacts", response_model=m.ArtifactsDeleteByFilterResp)
async def delete_by_filter(
    req: m.ArtifactsDeleteByFilterReq, request: Request, user: User = Depends(current_user)
) -> m.ArtifactsDeleteByFilterResp:
    ctx = ctx_of(request)
    return await artifacts.delete_by_filter(ctx.engine, ctx.blobs, user, req)


@router.post("/delete/artifacts/list", response_model=m.ArtifactsDeleteByUuidsResp)
async def delete_list(
    req: m.ArtifactsDeleteByUuidsReq, request: Request, user: User = Depends(current_user)
) -> m.ArtifactsDeleteByUuidsResp:
    ctx = ctx_of(request)
    if not req.uuids:
        raise errors.invalid("UUIDs list cannot be empty")
    done = set(await artifacts.delete_many(ctx.engine, ctx.blobs, user, req.uuids, req.content_type))
    return m.ArtifactsDeleteByUuidsResp(
        deleted_count=len(done), failed_uuids=[u for u in req.uuids if u not in done]
    )


@router.get("/{task_uuid}", response_model=m.TaskQueryResp)
async def get(task_uuid: str, request: Request, user: User = Depends(current_user)) -> m.TaskQueryResp:
    ctx = ctx_of(request)
    tid = path_uuid(task_uuid)
    # S3 reports no finished uploads: book them now so a committed task lists its artifacts.
    await artifacts.settle_artifact(ctx.engine, ctx.blobs, tid)
    return await tasks.get_task(ctx.engine, user, tid)


@router.put("/{task_uuid}", response_class=Response)
async def change(
    task_uuid: str, req: m.ChangeTaskReq, request: Request, user: User = Depends(current_user)
) -> Response:
    ctx = ctx_of(request)
    await tasks.change(ctx.engine, ctx.notifier, user, path_uuid(task_uuid), req)
    return empty()


@router.delete("/{task_uuid}", response_class=Response)
async def cancel(task_uuid: str, request: Request, user: User = Depends(current_user)) -> Response:
    ctx = ctx_of(request)
    await tasks.cancel(ctx.engine, ctx.notifier, user, path_uuid(task_uuid))
    return empty()


@router.put("/{task_uuid}/labels", response_class=Response)
async def update_labels(
    task_uuid: str, req: m.UpdateTaskLabelsReq, request: Request, user: User = Depends(current_user)
) -> Response:
    await tasks.update_labels(ctx_of(request).engine, user, path_uuid(task_uuid), req.labels)
    return empty()


@router.post("/{task_uuid}/artifacts", response_model=m.UploadArtifactResp)
async def upload_artifact(
    task_uuid: str, req: m.UploadArtifactReq, request: Request, user: User = Depends(current_user)
) -> m.UploadArtifactResp:
    ctx = ctx_of(request)
    return await artifacts.user_upload(ctx.engine, ctx.blobs, user, path_uuid(task_uuid), req)


@router.get("/{task_uuid}/download/artifacts/{content_type}", response_model=m.RemoteResourceDownloadResp)
async def download_artifact(
    task_uuid: str, content_type: str, request: Request, user: User = Depends(current_user)
) -> m.RemoteResourceDownloadResp:
    ctx = ctx_of(request)
    return await artifacts.user_download(
        ctx.engine, ctx.blobs, user, path_uuid(task_uuid), path_content_type(content_type)
    )


@router.delete("/{task_uuid}/artifacts/{content_type}", response_class=Response)
async def delete_artifact(
    task_uuid: str, content_type: str, request: Request, user: User = Depends(current_user)
) -> Response:
    ctx = ctx_of(request)
    await artifacts.delete_artifact(
        ctx.engine, ctx.blobs, user, path_uuid(task_uuid), path_content_type(content_type)
    )
    return empty()
