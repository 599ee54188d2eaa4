"""Group attachments (behavior.md §4.4, routes 12-20, 54 and 62): upload and download URLs, metadata,
queries, deletes and batch operations.

Objects live at ``<group_name>/<key>`` in the attachments bucket. Quota and ``storage_used`` follow
``services.storage``: the quota is checked when an upload URL is handed out, the attachment row and
the group's usage appear when the bytes do. Before reading rows, every entry point settles pending
uploads of what it reads, so S3 uploads (which the coordinator does not see) show up on the next
access. Keys are checked with ``mitosis.wire.keys`` (stricter than 0.6.8, §11 Q4); on read and delete
routes a bad key only explains a 404, so keys stored by 0.6.8 stay reachable.

These functions are also the API for other callers (the worker's resource fetch goes through route
54's ``worker_download``; a dashboard can call ``upload``, ``download``, ``query`` and ``delete``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mitosis.coordinator import errors
from mitosis.coordinator.auth import User, Worker
from mitosis.coordinator.blobs import BlobError, BlobStore, InvalidBlobKey
from mitosis.coordinator.db.tables import attachments, upload_reservations
from mitosis.coordinator.services import bounds, storage
from mitosis.coordinator.services.artifacts import download_expiry
from mitosis.coordinator.services.common import group_by_name, now, require_role, role_in_group
from mitosis.coordinator.services.tasks import find_task
from mitosis.coordinator.services.workers import require_worker_serves
from mitosis.wire import models as m
from mitosis.wire.enums import AttachmentContentType, GroupState, Role
from mitosis.wire.keys import InvalidKey, attachment_key_problem, check_attachment_key

log = logging.getLogger(__name__)

ONE_HOUR = timedelta(hours=1)
BATCH_CHUNK = 2048
MAX_BATCH = 10_000
"""Most keys one batch request may name or one filter request may touch (issue 4: bounded requests)."""


def _missing(group_name: str, key: str) -> errors.ApiError:
    return errors.ApiError(404, f"Attachment of group {group_name} and key {key} not found")


def _missing_or_bad(group_name: str, key: str) -> errors.ApiError:
    """A 404, unless the key could never exist: then a 400 that says why."""
    problem = attachment_key_problem(key, group_name)
    if problem is not None:
        return errors.invalid(f"Invalid attachment key {key!r}: {problem}")
    return _missing(group_name, key)


def _not_member(group_name: str) -> errors.ApiError:
    return errors.invalid(f"Group with name {group_name} not found or user is not in the group")


async def _member_group(conn: AsyncConnection, caller: User, group_name: str) -> Any:
    """Routes 15, 17-20 answer a missing group and a non-member alike: 400 (0.6.8)."""
    g = await group_by_name(conn, group_name)
    if g is None or (not caller.admin and await role_in_group(conn, caller.id, g.id) is None):
        raise _not_member(group_name)
    return g


async def _row(conn: AsyncConnection, group_id: int, key: str) -> Any:
    return (
        await conn.execute(
            select(attachments).where(attachments.c.group_id == group_id, attachments.c.key == key)
        )
    ).first()


async def _settle(engine: AsyncEngine, blobs: BlobStore, group_id: int, group_name: str, key: str) -> None:
    await storage.settle_object(engine, blobs, storage.StoredObject.attachment(group_id, group_name, key))


async def _group_id(engine: AsyncEngine, group_name: str) -> int | None:
    async with engine.connect() as conn:
        g = await group_by_name(conn, group_name)
    return None if g is None else int(g.id)


# ------------------------------------------------------------------------------------- route 12


async def upload(
    engine: AsyncEngine, blobs: BlobStore, caller: User, group_name: str, key: str, content_length: int
) -> m.UploadAttachmentResp:
    """Route 12: a presigned PUT for ``content_length`` bytes; ``exist`` says a row for the key exists."""
    try:
        check_attachment_key(key, group_name)
    except InvalidKey as exc:
        raise errors.invalid(f"Invalid attachment key {key!r}: {exc}") from None
    async with engine.begin() as conn:
        g = await group_by_name(conn, group_name)
        if g is None:
            raise errors.not_found(f"Group {group_name}")
        if g.state != GroupState.Active.code:
            raise errors.invalid("Group is not active")
        await require_role(conn, caller, g.id, group_name, Role.Write)
        obj = storage.StoredObject.attachment(g.id, group_name, key)
        existing = await storage.prepare_upload(
            conn, blobs, obj, content_length, missing=f"Group {group_name} not found"
        )
        try:
            url = await blobs.presign_put(
                "attachments", obj.object_key, content_length, storage.UPLOAD_URL_SECONDS
            )
        except InvalidBlobKey as exc:
            raise errors.ApiError(400, str(exc)) from None
        await storage.finish_upload(conn, obj, existing, content_length)
    return m.UploadAttachmentResp(exist=existing is not None, url=url)


# ----------------------------------------------------------------------------- routes 13 and 16


async def _readable(engine: AsyncEngine, blobs: BlobStore, caller: User, group_name: str, key: str) -> Any:
    """The attachment row, for a member of the group (any role); 404 and 403 as routes 13 and 16."""
    group_id = await _group_id(engine, group_name)
    if group_id is None:
        raise _missing_or_bad(group_name, key)
    await _settle(engine, blobs, group_id, group_name, key)
    async with engine.connect() as conn:
        await require_role(conn, caller, group_id, group_name, Role.Read)
        row = await _row(conn, group_id, key)
    if row is None:
        raise _missing_or_bad(group_name, key)
    return row


async def metadata(
    engine: AsyncEngine, blobs: BlobStore, caller: User, group_name: str, key: str
) -> m.AttachmentMetadata:
    """Route 13."""
    row = await _readable(engine, blobs, caller, group_name, key)
    return m.AttachmentMetadata(
        content_type=AttachmentContentType.from_code(row.content_type),
        size=row.size,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def download(
    engine: AsyncEngine, blobs: BlobStore, caller: User, group_name: str, key: str
) -> m.RemoteResourceDownloadResp:
    """Route 16: a presigned GET valid for one second per MB, at least an hour (§7.3)."""
    row = await _readable(engine, blobs, caller, group_name, key)
    url = await blobs.presign_get("attachments", f"{group_name}/{key}", download_expiry(row.size, 3600))
    return m.RemoteResourceDownloadResp(url=url, size=row.size)


async def worker_download(
    engine: AsyncEngine, blobs: BlobStore, worker: Worker, task_uuid: uuid.UUID, key: str
) -> m.RemoteResourceDownloadResp:
    """Route 54: an attachment of the group of ``task_uuid`` (active or archived, fixing §11 Q8).

    DECISIONS A4: the worker must serve that group.
    """
    async with engine.connect() as conn:
        task = await find_task(conn, task_uuid)
        if task is None:
            raise errors.not_found(f"Task with uuid {task_uuid}")
        await require_worker_serves(conn, worker, task.group_id, task.group_name)
    await _settle(engine, blobs, task.group_id, task.group_name, key)
    async with engine.connect() as conn:
        row = await _row(conn, task.group_id, key)
    if row is None:
        raise _missing_or_bad(task.group_name, key)
    url = await blobs.presign_get("attachments", f"{task.group_name}/{key}", download_expiry(row.size, 3600))
    return m.RemoteResourceDownloadResp(url=url, size=row.size)


# ----------------------------------------------------------------------------- routes 14 and 62


async def delete(
    engine: AsyncEngine, blobs: BlobStore, caller: User | None, group_name: str, key: str
) -> None:
    """Route 14 (``caller`` set: Write role, one-hour rule) or route 62 (``None``: admin, neither)."""
    group_id = await _group_id(engine, group_name)
    if group_id is None:
        raise _missing_or_bad(group_name, key)
    await _settle(engine, blobs, group_id, group_name, key)
    async with engine.begin() as conn:
        if caller is not None:
            await require_role(conn, caller, group_id, group_name, Role.Write)
        await storage.lock_group(conn, group_id)
        row = await _row(conn, group_id, key)
        if row is None:
            raise _missing_or_bad(group_name, key)
        if caller is not None and row.updated_at > now() - ONE_HOUR:
            raise errors.invalid("Cannot delete attachment that has been updated in the last hour")
        try:
            await blobs.delete("attachments", f"{group_name}/{key}")
        except BlobError as exc:
            log.error("deleting attachment %s/%s failed: %s", group_name, key, exc)
            raise errors.ApiError(500, "Internal server error") from None
        await storage.forget_rows(conn, group_id, attachments, [row])


# ------------------------------------------------------------------------------- routes 15-20


def _bounded(limit: int | None) -> int:
    return MAX_BATCH if limit is None else min(limit, MAX_BATCH)


async def _matching(
    engine: AsyncEngine,
    blobs: BlobStore,
    caller: User,
    group_name: str,
    key: str | None,
    limit: int | None,
    offset: int | None,
    *,
    capped: bool = True,
) -> tuple[Any, list[Any]]:
    """Route 15's query: membership (400), ``key LIKE '%<key>%'`` unescaped (§11 Q3), limit/offset.

    ``capped``: at most MAX_BATCH rows (the batch routes); otherwise ``limit`` as given."""
    async with engine.connect() as conn:
        g = await _member_group(conn, caller, group_name)
    await storage.settle_group(engine, blobs, "attachments", g.id)
    stmt = select(attachments).where(attachments.c.group_id == g.id)
    if key is not None:
        stmt = stmt.where(attachments.c.key.like(f"%{key}%"))
    # 0.6.8 gives no order; a stable one makes limit/offset paging meaningful.
    stmt = stmt.order_by(attachments.c.key).limit(_bounded(limit) if capped else limit)
    if offset:
        stmt = stmt.offset(offset)
    async with engine.connect() as conn:
        rows = list((await conn.execute(stmt)).all())
    return g, rows


async def _count(engine: AsyncEngine, group_id: int, key: str | None) -> int:
    stmt = select(func.count()).select_from(attachments).where(attachments.c.group_id == group_id)
    if key is not None:
        stmt = stmt.where(attachments.c.key.like(f"%{key}%"))
    async with engine.connect() as conn:
        total: int = (await conn.execute(stmt)).scalar_one()
    return total


async def query(
    engine: AsyncEngine,
    blobs: BlobStore,
    caller: User,
    group_name: str,
    req: m.AttachmentsQueryReq,
    max_rows: int | None = None,
) -> m.AttachmentsQueryResp:
    """Route 15. ``count=true`` counts every match (limit/offset do not apply, as for task queries).

    With ``max_rows`` (the API's ``max_query_rows``) a reply never holds more rows: a larger
    ``limit``, or more matches and no ``limit``, is a 400 (``services.bounds``)."""
    if req.count:
        async with engine.connect() as conn:
            g = await _member_group(conn, caller, group_name)
        await storage.settle_group(engine, blobs, "attachments", g.id)
        total = await _count(engine, g.id, req.key)
        return m.AttachmentsQueryResp(count=total, attachments=[], group_name=group_name)
    if max_rows is None:
        _, rows = await _matching(engine, blobs, caller, group_name, req.key, req.limit, req.offset)
    else:
        bounds.check_limit(req.limit, max_rows)
        limit = bounds.fetch_limit(req.limit, max_rows)
        g, rows = await _matching(engine, blobs, caller, group_name, req.key, limit, req.offset, capped=False)
        if len(rows) > max_rows:
            raise bounds.too_many("attachments", await _count(engine, g.id, req.key), max_rows)
    infos = [
        m.AttachmentQueryInfo(
            key=r.key,
            content_type=AttachmentContentType.from_code(r.content_type),
            size=r.size,
            created_at=r.created_at,
            updated_at=r.updated_at,
        )
        for r in rows
    ]
    return m.AttachmentsQueryResp(count=len(infos), attachments=infos, group_name=group_name)


async def _download_items(
    blobs: BlobStore, group_name: str, rows: Sequence[Any]
) -> list[m.AttachmentDownloadItem]:
    # Batch URLs are valid for 24 h (§7.3), enough for a long sequential download of many files.
    return [
        m.AttachmentDownloadItem(
            key=r.key,
            url=await blobs.presign_get(
                "attachments", f"{group_name}/{r.key}", download_expiry(r.size, 86400)
            ),
            size=r.size,
        )
        for r in rows
    ]


async def download_by_filter(
    engine: AsyncEngine,
    blobs: BlobStore,
    caller: User,
    group_name: str,
    req: m.AttachmentsDownloadByFilterReq,
) -> m.AttachmentsDownloadListResp:
    """Route 17: at most MAX_BATCH matches per request; page with limit/offset beyond that."""
    _, rows = await _matching(engine, blobs, caller, group_name, req.key, req.limit, req.offset)
    return m.AttachmentsDownloadListResp(
        downloads=await _download_items(blobs, group_name, rows), group_name=group_name
    )


def _check_keys(keys: Sequence[str]) -> list[str]:
    if not keys:
        raise errors.invalid("Keys list cannot be empty")
    if len(keys) > MAX_BATCH:
        raise errors.invalid(
            f"Too many keys: {len(keys)} in one request, at most {MAX_BATCH}; split the list"
        )
    return list(dict.fromkeys(keys))


async def _rows_by_keys(engine: AsyncEngine, blobs: BlobStore, group: Any, keys: list[str]) -> list[Any]:
    for start in range(0, len(keys), BATCH_CHUNK):
        chunk = [f"{group.group_name}/{k}" for k in keys[start : start + BATCH_CHUNK]]
        await storage.settle_reserved(
            engine,
            blobs,
            upload_reservations.c.bucket == "attachments",
            upload_reservations.c.object_key.in_(chunk),
        )
    rows: list[Any] = []
    async with engine.connect() as conn:
        for start in range(0, len(keys), BATCH_CHUNK):
            chunk = keys[start : start + BATCH_CHUNK]
            rows.extend(
                (
                    await conn.execute(
                        select(attachments).where(
                            attachments.c.group_id == group.id, attachments.c.key.in_(chunk)
                        )
                    )
                ).all()
            )
    return rows


async def download_by_keys(
    engine: AsyncEngine, blobs: BlobStore, caller: User, group_name: str, keys: Sequence[str]
) -> m.AttachmentsDownloadListResp:
    """Route 18: items for the keys that exist, missing keys silently left out (0.6.8)."""
    async with engine.connect() as conn:
        g = await _member_group(conn, caller, group_name)
    rows = await _rows_by_keys(engine, blobs, g, _check_keys(keys))
    return m.AttachmentsDownloadListResp(
        downloads=await _download_items(blobs, group_name, rows), group_name=group_name
    )


async def _delete_rows(
    engine: AsyncEngine, blobs: BlobStore, caller: User | None, group: Any, rows: Sequence[Any]
) -> list[str]:
    """The per-key delete routine of routes 19/20; returns the keys deleted.

    Needs Write (403 otherwise) unless ``caller`` is None; skips rows updated within the last hour
    (user callers) and rows whose blob cannot be deleted (logged).
    """
    if caller is not None:
        async with engine.connect() as conn:
            await require_role(conn, caller, group.id, group.group_name, Role.Write)
    cutoff = now() - ONE_HOUR
    deleted: list[str] = []
    for start in range(0, len(rows), BATCH_CHUNK):
        chunk = [r for r in rows[start : start + BATCH_CHUNK] if caller is None or r.updated_at <= cutoff]
        if not chunk:
            continue
        async with engine.begin() as conn:
            await storage.lock_group(conn, group.id)
            # Re-read under the lock: a concurrent upload may have touched a row since it was listed.
            fresh = (
                await conn.execute(select(attachments).where(attachments.c.id.in_([r.id for r in chunk])))
            ).all()
            fresh = [r for r in fresh if caller is None or r.updated_at <= cutoff]
            gone = await _delete_blobs(blobs, group.group_name, fresh)
            await storage.forget_rows(conn, group.id, attachments, gone)
        deleted.extend(r.key for r in gone)
    return deleted


async def _delete_blobs(blobs: BlobStore, group_name: str, rows: Sequence[Any]) -> list[Any]:
    """Delete the rows' blobs, one request per chunk; on failure, one by one to find the culprits."""
    try:
        await blobs.delete_many("attachments", [f"{group_name}/{r.key}" for r in rows])
        return list(rows)
    except BlobError as exc:
        log.warning("batch delete in group %s failed (%s); retrying one by one", group_name, exc)
    gone = []
    for r in rows:
        try:
            await blobs.delete("attachments", f"{group_name}/{r.key}")
        except BlobError as exc:
            log.warning("skipping attachment %s/%s: %s", group_name, r.key, exc)
            continue
        gone.append(r)
    return gone


async def delete_by_filter(
    engine: AsyncEngine, blobs: BlobStore, caller: User, group_name: str, req: m.AttachmentsDeleteByFilterReq
) -> m.AttachmentsDeleteByFilterResp:
    """Route 19: at most MAX_BATCH matches per request; run it again to delete more."""
    g, rows = await _matching(engine, blobs, caller, group_name, req.key, req.limit, req.offset)
    deleted = await _delete_rows(engine, blobs, caller, g, rows)
    return m.AttachmentsDeleteByFilterResp(deleted_count=len(deleted), group_name=group_name)


async def delete_by_keys(
    engine: AsyncEngine, blobs: BlobStore, caller: User, group_name: str, keys: Sequence[str]
) -> m.AttachmentsDeleteByKeysResp:
    """Route 20: ``failed_keys`` lists requested keys not deleted (missing, too recent or failed)."""
    async with engine.connect() as conn:
        g = await _member_group(conn, caller, group_name)
    wanted = _check_keys(keys)
    rows = await _rows_by_keys(engine, blobs, g, wanted)
    done = set(await _delete_rows(engine, blobs, caller, g, rows))
    return m.AttachmentsDeleteByKeysResp(
        deleted_count=len(done), failed_keys=[k for k in keys if k not in done], group_name=group_name
    )
