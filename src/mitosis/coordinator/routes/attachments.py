"""Group attachments (routes 12-20), the worker's attachment URL (54) and the admin delete (62).

``{key:path}`` captures the rest of the path, slashes included (0.6.8's ``{*key}``). The static
``query`` and ``list`` paths exist only for POST, so a GET or DELETE of a key named ``query`` or
``list`` falls through to the key routes instead of 0.6.8's 405 (§11 Q7): Starlette keeps looking
for a route whose method matches after a path-only match.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from mitosis.coordinator.auth import User, Worker, current_admin, current_user, current_worker
from mitosis.coordinator.routes import ctx_of, empty, path_uuid
from mitosis.coordinator.services import attachments
from mitosis.wire import models as m

router = APIRouter()


@router.post("/groups/{group_name}/attachments", response_model=m.UploadAttachmentResp)
async def upload(
    group_name: str, req: m.UploadAttachmentReq, request: Request, user: User = Depends(current_user)
) -> m.UploadAttachmentResp:
    ctx = ctx_of(request)
    return await attachments.upload(ctx.engine, ctx.blobs, user, group_name, req.key, req.content_length)


@router.post("/groups/{group_name}/attachments/query", response_model=m.AttachmentsQueryResp)
async def query(
    group_name: str, req: m.AttachmentsQueryReq, request: Request, user: User = Depends(current_user)
) -> m.AttachmentsQueryResp:
    ctx = ctx_of(request)
    return await attachments.query(ctx.engine, ctx.blobs, user, group_name, req, ctx.settings.max_query_rows)


@router.get("/groups/{group_name}/attachments/{key:path}", response_model=m.AttachmentMetadata)
async def metadata(
    group_name: str, key: str, request: Request, user: User = Depends(current_user)
) -> m.AttachmentMetadata:
    ctx = ctx_of(request)
    return await attachments.metadata(ctx.engine, ctx.blobs, user, group_name, key)


@router.delete("/groups/{group_name}/attachments/{key:path}", response_class=Response)
async def delete(group_name: str, key: str, request: Request, user: User = Depends(current_user)) -> Response:
    ctx = ctx_of(request)
    await attachments.delete(ctx.engine, ctx.blobs, user, group_name, key)
    return empty()


@router.post("/groups/{group_name}/download/attachments", response_model=m.AttachmentsDownloadListResp)
async def download_by_filter(
    group_name: str,
    req: m.AttachmentsDownloadByFilterReq,
    request: Request,
    user: User = Depends(current_user),
) -> m.AttachmentsDownloadListResp:
    ctx = ctx_of(request)
    return await attachments.download_by_filter(ctx.engine, ctx.blobs, user, group_name, req)


@router.post("/groups/{group_name}/download/attachments/list", response_model=m.AttachmentsDownloadListResp)
async def download_by_keys(
    group_name: str, req: m.AttachmentsDownloadByKeysReq, request: Request, user: User = Depends(current_user)
) -> m.AttachmentsDownloadListResp:
    ctx = ctx_of(request)
    return await attachments.download_by_keys(ctx.engine, ctx.blobs, user, group_name, req.keys)


@router.get(
    "/groups/{group_name}/download/attachments/{key:path}", response_model=m.RemoteResourceDownloadResp
)
async def download(
    group_name: str, key: str, request: Request, user: User = Depends(current_user)
) -> m.RemoteResourceDownloadResp:
    ctx = ctx_of(request)
    return await attachments.download(ctx.engine, ctx.blobs, user, group_name, key)


@router.post("/groups/{group_name}/delete/attachments", response_model=m.AttachmentsDeleteByFilterResp)
async def delete_by_filter(
    group_name: str, req: m.AttachmentsDeleteByFilterReq, request: Request, user: User = Depends(current_user)
) -> m.AttachmentsDeleteByFilterResp:
    ctx = ctx_of(request)
    return await attachments.delete_by_filter(ctx.engine, ctx.blobs, user, group_name, req)


@router.post("/groups/{group_name}/delete/attachments/list", response_model=m.AttachmentsDeleteByKeysResp)
async def delete_by_keys(
    group_name: str, req: m.AttachmentsDeleteByKeysReq, request: Request, user: User = Depends(current_user)
) -> m.AttachmentsDeleteByKeysResp:
    ctx = ctx_of(request)
    return await attachments.delete_by_keys(ctx.engine, ctx.blobs, user, group_name, req.keys)


@router.get("/workers/tasks/{task_uuid}/attachments/{key:path}", response_model=m.RemoteResourceDownloadResp)
async def worker_download(
    task_uuid: str, key: str, request: Request, worker: Worker = Depends(current_worker)
) -> m.RemoteResourceDownloadResp:
    ctx = ctx_of(request)
    return await attachments.worker_download(ctx.engine, ctx.blobs, worker, path_uuid(task_uuid), key)


@router.delete("/admin/groups/{group_name}/attachments/{key:path}", response_class=Response)
async def admin_delete(
    group_name: str, key: str, request: Request, _: User = Depends(current_admin)
) -> Response:
    ctx = ctx_of(request)
    await attachments.delete(ctx.engine, ctx.blobs, None, group_name, key)
    return empty()
