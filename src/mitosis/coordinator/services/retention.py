"""Retention: archived tasks older than their group's retention period are deleted for good.

A group's period is ``groups.retention_days`` when set, else the coordinator's ``retention_days``;
neither set (the default) keeps everything, as 0.6.8 does. Deleting a task removes its artifacts
(blobs first, then rows, giving the bytes back to the group's storage), its live-log rows and its
events, in batches so a large backlog never holds one long transaction.

Any number of coordinators may run the loop: on PostgreSQL a pass runs only while it holds a
session advisory lock (the others skip that round), so deletions never race; SQLite has one writer.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from mitosis.coordinator.blobs import BlobStore
from mitosis.coordinator.db.tables import (
    archived_tasks,
    artifacts,
    events,
    groups,
    task_log_chunks,
    task_log_streams,
)
from mitosis.coordinator.services import storage
from mitosis.coordinator.services.artifacts import artifact_key
from mitosis.coordinator.services.common import now
from mitosis.wire.enums import ArtifactContentType

log = logging.getLogger(__name__)

# Any constant works; it only has to be the same for every coordinator sharing a database.
RETENTION_LOCK = 0x6D697472
BATCH = 500
MAX_BATCHES_PER_PASS = 200


def effective_days(group_days: int | None, default_days: int | None) -> int | None:
    """The group's own period wins; 0 or less (either level) means keep forever."""
    days = group_days if group_days is not None else default_days
    return days if days is not None and days > 0 else None


async def _purge_group(
    engine: AsyncEngine, blobs: BlobStore, group_id: int, cutoff: datetime, budget: int
) -> tuple[int, int]:
    """Delete up to ``budget`` batches of the group's tasks archived before ``cutoff``."""
    tasks_deleted = artifacts_deleted = 0
    for _ in range(budget):
        async with engine.begin() as conn:
            rows = (
                await conn.execute(
                    select(archived_tasks.c.id, archived_tasks.c.uuid)
                    .where(archived_tasks.c.group_id == group_id, archived_tasks.c.updated_at < cutoff)
                    .order_by(archived_tasks.c.updated_at)
                    .limit(BATCH)
                )
            ).all()
            if not rows:
                break
            uuids = [r.uuid for r in rows]
            arts = (await conn.execute(select(artifacts).where(artifacts.c.task_id.in_(uuids)))).all()
            if arts:
                await storage.lock_group(conn, group_id)
                # Blobs before rows: a crash in between leaves rows whose blobs are gone, which the
                # next pass deletes again (a missing blob is not an error), never unowned blobs.
                await blobs.delete_many(
                    "artifacts",
                    [artifact_key(a.task_id, ArtifactContentType.from_code(a.content_type)) for a in arts],
                )
                await storage.forget_rows(conn, group_id, artifacts, arts)
            await conn.execute(delete(task_log_chunks).where(task_log_chunks.c.task_uuid.in_(uuids)))
            await conn.execute(delete(task_log_streams).where(task_log_streams.c.task_uuid.in_(uuids)))
            await conn.execute(delete(events).where(events.c.task_uuid.in_(uuids)))
            await conn.execute(delete(archived_tasks).where(archived_tasks.c.id.in_([r.id for r in rows])))
        tasks_deleted += len(rows)
        artifacts_deleted += len(arts)
        if len(rows) < BATCH:
            break
    return tasks_deleted, artifacts_deleted


async def purge(
    engine: AsyncEngine, blobs: BlobStore, default_days: int | None, at: datetime | None = None
) -> dict[str, Any]:
    """One retention pass. ``skipped`` is True when another coordinator holds the lock."""
    ts = at or now()
    out: dict[str, Any] = {"tasks": 0, "artifacts": 0, "skipped": False}
    pg = engine.dialect.name == "postgresql"
    async with engine.connect() as lock_conn:
        if pg:
            await lock_conn.execution_options(isolation_level="AUTOCOMMIT")
            got = (
                await lock_conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": RETENTION_LOCK})
            ).scalar()
            if not got:
                out["skipped"] = True
                return out
        try:
            async with engine.connect() as conn:
                policies = (await conn.execute(select(groups.c.id, groups.c.retention_days))).all()
            budget = MAX_BATCHES_PER_PASS
            for g in policies:
                days = effective_days(g.retention_days, default_days)
                if days is None or budget <= 0:
                    continue
                n_tasks, n_arts = await _purge_group(engine, blobs, g.id, ts - timedelta(days=days), budget)
                out["tasks"] += n_tasks
                out["artifacts"] += n_arts
                budget -= max(1, -(-n_tasks // BATCH))
        finally:
            if pg:
                await lock_conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": RETENTION_LOCK})
    return out
