"""Task artifacts: upload URLs with quota accounting, download URLs, deletes and batch operations.

Accounting is the shared scheme of ``services.storage`` (stricter than 0.6.8's §7.4): the quota is
checked when an upload URL is handed out, but the group's ``storage_used`` and the artifact row
follow the bytes really stored, settled when the upload completes (fs), on the next access or when
the URL's reservation expires (S3). Blob deletes happen before the row goes, so a failed delete
loses nothing.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mitosis.coordinator import errors
from mitosis.coordinator.auth import User
from mitosis.coordinator.blobs import BlobError, BlobStore, InvalidBlobKey
from mitosis.coordinator.db.tables import active_tasks, archived_tasks, artifacts, upload_reservations
from mitosis.coordinator.services import storage
from mitosis.coordinator.services.common import now, require_role, role_in_group
from mitosis.coordinator.services.tasks import find_task, matching_uuids
from mitosis.wire import models as m
from mitosis.wire.enums import ArtifactContentType, Role

log = logging.getLogger(__name__)

UPLOAD_URL_SECONDS = storage.UPLOAD_URL_SECONDS
ONE_HOUR = timedelta(hours=1)
BATCH_CHUNK = 2048


def artifact_key(task_uuid: uuid.UUID, content_type: ArtifactContentType) -> str:
    return f"{task_uuid}/{content_type.file_name}"


def download_expiry(size: int, minimum: int) -> int:
    """One second per MB, clamped to [1 h, 24 h], never below ``minimum`` (behavior.md §7.3)."""
    return max(minimum, min(86400, max(3600, size // 1_000_000)))


async def upload_url(
    conn: AsyncConnection,
    blobs: BlobStore,
    task_uuid: uuid.UUID,
    task_table_id: int | None,
    group_id: int,
    content_type: ArtifactContentType,
    length: int,
) -> tuple[bool, str]:
    """The shared upload routine of route 30 and the worker ``Upload`` op: (exist, presigned PUT)."""
    if task_table_id is not None:
        await conn.execute(
            update(active_tasks).where(active_tasks.c.id == task_table_id).values(updated_at=now())
        )
    obj = storage.StoredObject.artifact(group_id, task_uuid, content_type)
    existing = await storage.prepare_upload(conn, blobs, obj, length, missing="Group for the task not found")
    try:
        url = await blobs.presign_put("artifacts", obj.object_key, length, UPLOAD_URL_SECONDS)
    except InvalidBlobKey as exc:
        raise errors.ApiError(400, str(exc)) from None
    await storage.finish_upload(conn, obj, existing, length)
    return existing is not None, url


async def user_upload(
    engine: AsyncEngine, blobs: BlobStore, caller: User, task_uuid: uuid.UUID, req: m.UploadArtifactReq
) -> m.UploadArtifactResp:
    async with engine.begin() as conn:
        row = await find_task(conn, task_uuid)
        if row is None:
            raise errors.not_found(f"Task {task_uuid}")
        await require_role(conn, caller, row.group_id, row.group_name, Role.Write)
        active_id = None if row.archived else row.id
        exist, url = await upload_url(
            conn, blobs, task_uuid, active_id, row.group_id, req.content_type, req.content_length
        )
    return m.UploadArtifactResp(exist=exist, url=url)


async def settle_artifact(engine: AsyncEngine, blobs: BlobStore, task_uuid: uuid.UUID) -> None:
    """Book the task's artifacts whose uploads are pending (S3 reports no completions); cheap when none.

    Callers that only hold a connection (route 53, task queries, the worker's commit) should call
    this first so that an S3 upload that has just finished is visible.
    """
    await storage.settle_reserved(
        engine,
        blobs,
        upload_reservations.c.bucket == "artifacts",
        upload_reservations.c.task_uuid == task_uuid,
    )


async def download(
    conn: AsyncConnection,
    blobs: BlobStore,
    task_uuid: uuid.UUID,
    content_type: ArtifactContentType,
    minimum: int = 3600,
) -> m.RemoteResourceDownloadResp:
    art = (
        await conn.execute(
            select(artifacts).where(
                artifacts.c.task_id == task_uuid, artifacts.c.content_type == content_type.code
            )
        )
    ).first()
    if art is None:
        raise errors.ApiError(
            404, f"Artifact with uuid {task_uuid} and content type {content_type.file_name} not found"
        )
    url = await blobs.presign_get(
        "artifacts", artifact_key(task_uuid, content_type), download_expiry(art.size, minimum)
    )
    return m.RemoteResourceDownloadResp(url=url, size=art.size)


async def user_download(
    engine: AsyncEngine,
    blobs: BlobStore,
    caller: User,
    task_uuid: uuid.UUID,
    content_type: ArtifactContentType,
) -> m.RemoteResourceDownloadResp:
    await settle_artifact(engine, blobs, task_uuid)
    async with engine.connect() as conn:
        row = await find_task(conn, task_uuid)
        if row is None:
            raise errors.not_found(f"Task with uuid {task_uuid}")
        await require_role(conn, caller, row.group_id, row.group_name, Role.Read)
        return await download(conn, blobs, task_uuid, content_type)


async def _delete_one(conn: AsyncConnection, blobs: BlobStore, art: Any, group_id: int) -> None:
    await storage.lock_group(conn, group_id)
    await blobs.delete(
        "artifacts", artifact_key(art.task_id, ArtifactContentType.from_code(art.content_type))
    )
    await storage.forget_rows(conn, group_id, artifacts, [art])


async def delete_artifact(
    engine: AsyncEngine,
    blobs: BlobStore,
    caller: User | None,
    task_uuid: uuid.UUID,
    content_type: ArtifactContentType,
) -> None:
    """User delete (``caller`` set: Write role and the one-hour rule) or admin delete (``None``)."""
    await settle_artifact(engine, blobs, task_uuid)
    async with engine.begin() as conn:
        row = await find_task(conn, task_uuid)
        if row is None:
            raise errors.not_found(f"Task with uuid {task_uuid}")
        if caller is not None:
            await require_role(conn, caller, row.group_id, row.group_name, Role.Write)
        art = (
            await conn.execute(
                select(artifacts).where(
                    artifacts.c.task_id == task_uuid, artifacts.c.content_type == content_type.code
                )
            )
        ).first()
        if art is None:
            raise errors.ApiError(
                404, f"Artifact with uuid {task_uuid} and content type {content_type.file_name} not found"
            )
        if caller is not None and art.updated_at > now() - ONE_HOUR:
            raise errors.invalid("Cannot delete artifact that has been updated in the last hour")
        try:
            await _delete_one(conn, blobs, art, row.group_id)
        except BlobError as exc:
            log.error("deleting artifact blob failed: %s", exc)
            raise errors.ApiError(500, "Internal server error") from None


async def download_many(
    engine: AsyncEngine,
    blobs: BlobStore,
    caller: User,
    uuids: list[uuid.UUID],
    content_type: ArtifactContentType,
) -> m.ArtifactsDownloadListResp:
    items: list[m.ArtifactDownloadItem] = []
    for start in range(0, len(uuids), BATCH_CHUNK):
        await storage.settle_reserved(
            engine,
            blobs,
            upload_reservations.c.bucket == "artifacts",
            upload_reservations.c.task_uuid.in_(uuids[start : start + BATCH_CHUNK]),
        )
    async with engine.connect() as conn:
        readable: dict[int, bool] = {}
        for start in range(0, len(uuids), BATCH_CHUNK):
            chunk = uuids[start : start + BATCH_CHUNK]
            rows = await conn.execute(
                select(artifacts, _task_group(active_tasks), _task_group(archived_tasks)).where(
                    artifacts.c.task_id.in_(chunk), artifacts.c.content_type == content_type.code
                )
            )
            for art in rows.all():
                group_id = art.active_group or art.archived_group
                if group_id is None:
                    continue
                if not caller.admin:
                    if group_id not in readable:
                        readable[group_id] = await role_in_group(conn, caller.id, group_id) is not None
                    if not readable[group_id]:
                        continue
                url = await blobs.presign_get(
                    "artifacts", artifact_key(art.task_id, content_type), download_expiry(art.size, 86400)
                )
                items.append(m.ArtifactDownloadItem(uuid=art.task_id, url=url, size=art.size))
    return m.ArtifactsDownloadListResp(downloads=items)


def _task_group(table: Any) -> Any:
    name = "active_group" if table is active_tasks else "archived_group"
    return select(table.c.group_id).where(table.c.uuid == artifacts.c.task_id).scalar_subquery().label(name)


async def download_by_filter(
    engine: AsyncEngine, blobs: BlobStore, caller: User, req: m.ArtifactsDownloadByFilterReq
) -> m.ArtifactsDownloadListResp:
    async with engine.connect() as conn:
        _, uuids = await matching_uuids(conn, caller, req, req.reporter_uuid)
    return await download_many(engine, blobs, caller, uuids, req.content_type)


async def delete_many(
    engine: AsyncEngine,
    blobs: BlobStore,
    caller: User,
    uuids: list[uuid.UUID],
    content_type: ArtifactContentType,
) -> list[uuid.UUID]:
    """Per-artifact delete routine of routes 35/36; returns the uuids whose artifact was deleted."""
    deleted: list[uuid.UUID] = []
    cutoff = now() - ONE_HOUR
    for start in range(0, len(uuids), BATCH_CHUNK):
        chunk = uuids[start : start + BATCH_CHUNK]
        async with engine.begin() as conn:
            rows = (
                await conn.execute(
                    select(artifacts, _task_group(active_tasks), _task_group(archived_tasks)).where(
                        artifacts.c.task_id.in_(chunk), artifacts.c.content_type == content_type.code
                    )
                )
            ).all()
            for art in rows:
                group_id = art.active_group or art.archived_group
                if group_id is None or art.updated_at > cutoff:
                    continue
                if not caller.admin:
                    role = await role_in_group(conn, caller.id, group_id)
                    if role is None or not role.at_least(Role.Write):
                        continue
                try:
                    await _delete_one(conn, blobs, art, group_id)
                except BlobError as exc:
                    log.warning("skipping artifact %s: %s", art.task_id, exc)
                    continue
                deleted.append(art.task_id)
    return deleted


async def delete_by_filter(
    engine: AsyncEngine, blobs: BlobStore, caller: User, req: m.ArtifactsDeleteByFilterReq
) -> m.ArtifactsDeleteByFilterResp:
    async with engine.connect() as conn:
        _, uuids = await matching_uuids(conn, caller, req, req.reporter_uuid)
    return m.ArtifactsDeleteByFilterResp(
        deleted_count=len(await delete_many(engine, blobs, caller, uuids, req.content_type))
    )
