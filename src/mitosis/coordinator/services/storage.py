"""Storage accounting shared by artifacts and attachments: quota at URL time, usage from real bytes.

0.6.8 charged ``groups.storage_used`` when it handed out an upload URL and never shrank a record
(behavior.md §7.4), so abandoned uploads and smaller overwrites left the books wrong forever.
Issue 4 asks for ``storage_used`` to equal the bytes really stored. The design:

* Handing out an upload URL writes an **upload reservation** (``upload_reservations``) instead of
  touching ``storage_used`` or creating the artifact/attachment row. The quota check at URL time
  counts ``storage_used`` plus every live reservation of the group, minus the size of the object the
  upload replaces, so several URLs in flight cannot together overrun the quota.
* **Settling** an object makes its row agree with the blob store: ``stat`` the object, then insert,
  resize or drop the row and move ``storage_used`` by the difference, all under a lock on the group
  row (``FOR UPDATE`` on PostgreSQL; SQLite has one writer). Because settling reads the store
  instead of trusting a URL, a last-writer-wins race, a smaller overwrite or an upload that never
  arrived all end with the books matching the bytes.
* When settling happens: the filesystem store's PUT handler reports each finished upload
  (``upload_completed``) and each failed one (``upload_abandoned``, which releases its reservation),
  so on that backend the books are right as soon as the PUT returns. S3 tells the coordinator
  nothing, so objects with reservations are settled on the next access (metadata, download, listing,
  another upload URL for the same key) and, finally, once the reservation has expired: the URL
  lifetime plus a grace for uploads that started just before it ended.
* A reservation is dropped when its upload is known to be done (the fs hook), when settling saw its
  bytes arrive (a new row or a changed size of that exact length), or when it has expired. Until
  then it only counts against the quota check, never against ``storage_used``.

``exist`` keeps its 0.6.8 meaning: a row for the object existed when the URL was requested.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mitosis.coordinator import errors
from mitosis.coordinator.blobs import BlobError, BlobStore, Bucket
from mitosis.coordinator.db.tables import (
    active_tasks,
    archived_tasks,
    artifacts,
    attachments,
    groups,
    upload_reservations,
)
from mitosis.coordinator.services.common import now
from mitosis.wire.codecs import format_size
from mitosis.wire.enums import ArtifactContentType, GroupState

log = logging.getLogger(__name__)

UPLOAD_URL_SECONDS = 3600
# Both stores check a URL's signature only when the request starts, so an upload begun just before
# its URL expired may still be streaming; its reservation outlives the URL by this much.
SETTLE_GRACE = timedelta(minutes=15)
# How many objects one access settles at most, so a listing never turns into thousands of HEADs.
SETTLE_BATCH = 100


@dataclass(frozen=True)
class StoredObject:
    """One artifact or attachment: where its bytes live and which row records them."""

    bucket: Bucket
    object_key: str
    group_id: int
    attachment_key: str | None = None
    task_uuid: uuid.UUID | None = None
    content_type: int | None = None

    @classmethod
    def attachment(cls, group_id: int, group_name: str, key: str) -> StoredObject:
        return cls("attachments", f"{group_name}/{key}", group_id, attachment_key=key)

    @classmethod
    def artifact(cls, group_id: int, task_uuid: uuid.UUID, content_type: ArtifactContentType) -> StoredObject:
        return cls(
            "artifacts",
            f"{task_uuid}/{content_type.file_name}",
            group_id,
            task_uuid=task_uuid,
            content_type=content_type.code,
        )

    @classmethod
    def from_reservation(cls, row: Any) -> StoredObject:
        bucket: Bucket = "artifacts" if row.bucket == "artifacts" else "attachments"
        return cls(bucket, row.object_key, row.group_id, row.attachment_key, row.task_uuid, row.content_type)


def _floor_zero(conn: AsyncConnection, expr: Any) -> Any:
    if conn.dialect.name == "sqlite":
        return func.max(expr, 0)
    return func.greatest(expr, 0)


async def lock_group(conn: AsyncConnection, group_id: int) -> Any:
    """The group row, locked until the transaction ends: every change of its usage goes through here."""
    return (await conn.execute(select(groups).where(groups.c.id == group_id).with_for_update())).first()


async def adjust_used(conn: AsyncConnection, group_id: int, delta: int) -> None:
    if delta == 0:
        return
    await conn.execute(
        update(groups)
        .where(groups.c.id == group_id)
        .values(storage_used=_floor_zero(conn, groups.c.storage_used + delta), updated_at=now())
    )


def _live(at: datetime) -> ColumnElement[bool]:
    return upload_reservations.c.expires_at > at - SETTLE_GRACE


async def pending_bytes(conn: AsyncConnection, group_id: int) -> int:
    """Bytes that live upload reservations of the group may still add."""
    total = (
        await conn.execute(
            select(func.coalesce(func.sum(upload_reservations.c.size), 0)).where(
                upload_reservations.c.group_id == group_id, _live(now())
            )
        )
    ).scalar_one()
    return int(total)


async def check_quota(
    conn: AsyncConnection, group_id: int, old_size: int | None, new_size: int, *, missing: str
) -> None:
    """Raise unless the group may take ``new_size`` bytes replacing ``old_size``; call with the group locked."""
    g = (await conn.execute(select(groups).where(groups.c.id == group_id))).first()
    if g is None:
        raise errors.invalid(missing)
    if g.state != GroupState.Active.code:
        raise errors.invalid("Group is not active")
    pending = await pending_bytes(conn, group_id)
    needed = new_size - (old_size or 0)
    if g.storage_used + pending + needed > g.storage_quota:
        in_flight = f", {format_size(pending)} more are reserved by uploads in progress" if pending else ""
        raise errors.quota_exceeded(
            f"group {g.group_name} uses {format_size(g.storage_used)} of {format_size(g.storage_quota)}"
            f"{in_flight}; this upload needs {format_size(max(needed, 0))} more. Delete objects or ask "
            "an administrator to raise the group's storage quota"
        )


async def reserve(
    conn: AsyncConnection, obj: StoredObject, size: int, seconds: int = UPLOAD_URL_SECONDS
) -> None:
    at = now()
    await conn.execute(
        insert(upload_reservations).values(
            bucket=obj.bucket,
            object_key=obj.object_key,
            group_id=obj.group_id,
            attachment_key=obj.attachment_key,
            task_uuid=obj.task_uuid,
            content_type=obj.content_type,
            size=size,
            created_at=at,
            expires_at=at + timedelta(seconds=seconds),
        )
    )


async def recorded(conn: AsyncConnection, obj: StoredObject) -> Any:
    """The artifact or attachment row of ``obj`` (with ``id``, ``size``, ``updated_at``), or None."""
    if obj.bucket == "attachments":
        stmt = select(attachments).where(
            attachments.c.group_id == obj.group_id, attachments.c.key == obj.attachment_key
        )
    else:
        stmt = select(artifacts).where(
            artifacts.c.task_id == obj.task_uuid, artifacts.c.content_type == obj.content_type
        )
    return (await conn.execute(stmt)).first()


def _table(obj: StoredObject) -> Any:
    return attachments if obj.bucket == "attachments" else artifacts


async def _write_row(conn: AsyncConnection, obj: StoredObject, row: Any, size: int, at: datetime) -> None:
    table = _table(obj)
    if row is not None:
        await conn.execute(update(table).where(table.c.id == row.id).values(size=size, updated_at=at))
    elif obj.bucket == "attachments":
        await conn.execute(
            insert(attachments).values(
                group_id=obj.group_id,
                key=obj.attachment_key,
                content_type=0,
                size=size,
                created_at=at,
                updated_at=at,
            )
        )
    else:
        await conn.execute(
            insert(artifacts).values(
                task_id=obj.task_uuid, content_type=obj.content_type, size=size, created_at=at, updated_at=at
            )
        )


async def settle(
    conn: AsyncConnection, blobs: BlobStore, obj: StoredObject, *, completed_size: int | None = None
) -> int | None:
    """Make the row of ``obj`` match the bytes in the store; returns the real size (None: no object).

    Call inside a transaction holding ``lock_group(obj.group_id)``. ``completed_size`` is the length
    of an upload the caller knows has just finished (the fs PUT hook): its reservation goes and the
    row's ``updated_at`` moves even when the size did not change.
    """
    real = await blobs.stat(obj.bucket, obj.object_key)
    row = await recorded(conn, obj)
    at = now()
    grew = False
    if real is None:
        if row is not None:
            await conn.execute(delete(_table(obj)).where(_table(obj).c.id == row.id))
            await adjust_used(conn, obj.group_id, -row.size)
    elif row is None or row.size != real or completed_size is not None:
        grew = row is None or row.size != real
        await _write_row(conn, obj, row, real, at)
        await adjust_used(conn, obj.group_id, real - (0 if row is None else row.size))
    reservations = (
        await conn.execute(
            select(upload_reservations)
            .where(
                upload_reservations.c.bucket == obj.bucket, upload_reservations.c.object_key == obj.object_key
            )
            .order_by(upload_reservations.c.id)
        )
    ).all()
    done_size = completed_size if completed_size is not None else (real if grew else None)
    drop: list[int] = []
    for r in reservations:
        if r.expires_at <= at - SETTLE_GRACE:
            drop.append(r.id)
        elif done_size is not None and r.size == done_size:
            # Several reservations of one length are interchangeable: one upload of that length ended.
            drop.append(r.id)
            done_size = None
    if drop:
        await conn.execute(delete(upload_reservations).where(upload_reservations.c.id.in_(drop)))
    return real


async def settle_reserved(engine: AsyncEngine, blobs: BlobStore, *where: ColumnElement[bool]) -> None:
    """Settle the objects that have reservations matching ``where`` (at most SETTLE_BATCH of them)."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(upload_reservations)
                .where(*where)
                .order_by(upload_reservations.c.id)
                .limit(SETTLE_BATCH)
            )
        ).all()
    if not rows:
        return
    by_group: dict[int, dict[tuple[str, str], StoredObject]] = {}
    for row in rows:
        by_group.setdefault(row.group_id, {})[(row.bucket, row.object_key)] = StoredObject.from_reservation(
            row
        )
    for group_id, objects in by_group.items():
        async with engine.begin() as conn:
            await lock_group(conn, group_id)
            for obj in objects.values():
                try:
                    await settle(conn, blobs, obj)
                except BlobError as exc:
                    # settle() asks the store before it writes anything: with the store down the
                    # reservation stays (still held against the quota) and a later access settles
                    # it, so a read or a worker's commit does not fail because the store does.
                    log.warning("cannot settle %s/%s now: %s", obj.bucket, obj.object_key, exc)


async def settle_object(engine: AsyncEngine, blobs: BlobStore, obj: StoredObject) -> None:
    """Settle ``obj`` if an upload to it is pending; a plain read when none is."""
    await settle_reserved(
        engine,
        blobs,
        upload_reservations.c.bucket == obj.bucket,
        upload_reservations.c.object_key == obj.object_key,
    )


async def settle_group(engine: AsyncEngine, blobs: BlobStore, bucket: Bucket | None, group_id: int) -> None:
    """Settle the group's objects with pending uploads (of one bucket, or both), e.g. before listing."""
    where = [upload_reservations.c.group_id == group_id]
    if bucket is not None:
        where.append(upload_reservations.c.bucket == bucket)
    await settle_reserved(engine, blobs, *where)


async def settle_expired(conn: AsyncConnection, blobs: BlobStore, group_id: int) -> None:
    """Settle, for the last time, the group's objects whose reservations have expired (group locked)."""
    rows = (
        await conn.execute(
            select(upload_reservations)
            .where(upload_reservations.c.group_id == group_id, ~_live(now()))
            .order_by(upload_reservations.c.id)
            .limit(SETTLE_BATCH)
        )
    ).all()
    seen: set[tuple[str, str]] = set()
    for row in rows:
        if (row.bucket, row.object_key) not in seen:
            seen.add((row.bucket, row.object_key))
            await settle(conn, blobs, StoredObject.from_reservation(row))


async def has_reservation(conn: AsyncConnection, obj: StoredObject) -> bool:
    found = (
        await conn.execute(
            select(upload_reservations.c.id)
            .where(
                upload_reservations.c.bucket == obj.bucket, upload_reservations.c.object_key == obj.object_key
            )
            .limit(1)
        )
    ).first()
    return found is not None


async def prepare_upload(
    conn: AsyncConnection, blobs: BlobStore, obj: StoredObject, length: int, *, missing: str
) -> Any:
    """The common first half of every upload-URL request; returns the object's current row or None.

    Locks the group, settles stale reservations of the group and pending ones of this object (so
    ``exist`` and the quota see reality), then checks the quota for ``length`` bytes.
    """
    if await lock_group(conn, obj.group_id) is None:
        raise errors.invalid(missing)
    await settle_expired(conn, blobs, obj.group_id)
    if await has_reservation(conn, obj):
        await settle(conn, blobs, obj)
    row = await recorded(conn, obj)
    await check_quota(conn, obj.group_id, None if row is None else row.size, length, missing=missing)
    return row


async def finish_upload(conn: AsyncConnection, obj: StoredObject, row: Any, length: int) -> None:
    """The second half, once the URL is signed: hold the quota, and keep 0.6.8's one-hour rule.

    Touching an existing row's ``updated_at`` makes user deletes wait an hour, the URL's lifetime,
    exactly as in 0.6.8; a new object has no row to delete until its bytes arrive.
    """
    await reserve(conn, obj, length)
    if row is not None:
        table = _table(obj)
        await conn.execute(update(table).where(table.c.id == row.id).values(updated_at=now()))


async def _object_for(conn: AsyncConnection, bucket: str, object_key: str) -> StoredObject | None:
    """Work out which row an object key belongs to when no reservation says so."""
    head, sep, tail = object_key.partition("/")
    if not sep or not tail:
        return None
    if bucket == "attachments":
        group_id = (await conn.execute(select(groups.c.id).where(groups.c.group_name == head))).scalar()
        return None if group_id is None else StoredObject.attachment(group_id, head, tail)
    if bucket != "artifacts" or not tail.endswith(".tar.gz"):
        return None
    try:
        task_uuid = uuid.UUID(head)
        content_type = ArtifactContentType(tail.removesuffix(".tar.gz"))
    except ValueError:
        return None
    for table in (active_tasks, archived_tasks):
        group_id = (await conn.execute(select(table.c.group_id).where(table.c.uuid == task_uuid))).scalar()
        if group_id is not None:
            return StoredObject.artifact(group_id, task_uuid, content_type)
    return None


async def upload_completed(
    engine: AsyncEngine, blobs: BlobStore, bucket: str, object_key: str, length: int
) -> None:
    """The fs store stored ``length`` bytes at ``object_key``: book them now."""
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                select(upload_reservations)
                .where(
                    upload_reservations.c.bucket == bucket,
                    upload_reservations.c.object_key == object_key,
                    upload_reservations.c.size == length,
                )
                .order_by(upload_reservations.c.id)
                .limit(1)
            )
        ).first()
        obj = (
            StoredObject.from_reservation(row)
            if row is not None
            else await _object_for(conn, bucket, object_key)
        )
        if obj is None:
            log.warning(
                "stored %s/%s but no group owns it; it is not counted in any quota", bucket, object_key
            )
            return
        await lock_group(conn, obj.group_id)
        await settle(conn, blobs, obj, completed_size=length)


async def upload_abandoned(engine: AsyncEngine, bucket: str, object_key: str, length: int) -> None:
    """An fs upload failed half way: nothing was stored, so its reservation stops holding quota."""
    async with engine.begin() as conn:
        row_id = (
            await conn.execute(
                select(upload_reservations.c.id)
                .where(
                    upload_reservations.c.bucket == bucket,
                    upload_reservations.c.object_key == object_key,
                    upload_reservations.c.size == length,
                )
                .order_by(upload_reservations.c.id)
                .limit(1)
            )
        ).scalar()
        if row_id is not None:
            await conn.execute(delete(upload_reservations).where(upload_reservations.c.id == row_id))


async def forget_rows(conn: AsyncConnection, group_id: int, table: Any, rows: Sequence[Any]) -> None:
    """Drop rows whose blobs were deleted and give their bytes back to the group."""
    if not rows:
        return
    await conn.execute(delete(table).where(table.c.id.in_([r.id for r in rows])))
    await adjust_used(conn, group_id, -sum(r.size for r in rows))
