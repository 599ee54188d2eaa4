"""Recording state changes into the ``events`` table, in the caller's transaction.

Every service that changes a task's or a worker's state calls one of these with its open
connection, so the event exists exactly when the change does. A PostgreSQL NOTIFY on
``mitosis_events`` (delivered on commit) wakes stream readers on every coordinator.
"""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from mitosis.coordinator.db.tables import events, group_worker, groups, workers
from mitosis.coordinator.services.common import now

EVENTS_CHANNEL = "mitosis_events"


async def _notify(conn: AsyncConnection) -> None:
    """Nothing to send: on PostgreSQL the ``events_notify`` trigger (migration 0005) does it."""


# Per database (keyed by engine): one process may serve several, e.g. the in-process coordinators
# of the test suite, where the same group id names different groups.
_group_names: weakref.WeakKeyDictionary[Any, dict[int, str]] = weakref.WeakKeyDictionary()


async def group_name(conn: AsyncConnection, group_id: int) -> str:
    """A group's name, cached per database: names never change and ids are never reused."""
    names = _group_names.setdefault(conn.engine.sync_engine, {})
    name = names.get(group_id)
    if name is None:
        name = (await conn.execute(select(groups.c.group_name).where(groups.c.id == group_id))).scalar_one()
        if len(names) > 100_000:
            names.clear()
        names[group_id] = name
    return name


async def task_event(
    conn: AsyncConnection, task_uuid: uuid.UUID, group_id: int, labels: Any, state: str, **data: Any
) -> None:
    """Record one task change when the caller already holds the task's uuid, group and labels."""
    await task_events(
        conn,
        [
            {
                "uuid": task_uuid,
                "group": await group_name(conn, group_id),
                "state": state,
                "labels": labels,
                "data": data or None,
            }
        ],
    )


async def task_events(conn: AsyncConnection, rows: Iterable[dict[str, Any]]) -> None:
    """Record task changes. Each row: uuid, group (name), state, labels, and optional data."""
    ts = now()
    values = [
        {
            "created_at": ts,
            "kind": "task",
            "groups": [r["group"]],
            "task_uuid": r["uuid"],
            "worker_uuid": r.get("worker"),
            "state": r["state"],
            "labels": list(r.get("labels") or []),
            "data": r.get("data"),
        }
        for r in rows
    ]
    if values:
        await conn.execute(insert(events), values)
        await _notify(conn)


async def task_event_for_ids(
    conn: AsyncConnection, table: Any, ids: Sequence[int], state: str, **data: Any
) -> None:
    """Record the same change for tasks given by id (looks up uuid, group and labels)."""
    if not ids:
        return
    # The worker involved: the one holding an active task, or the one that committed an archived one.
    worker = table.c.reporter_uuid if "reporter_uuid" in table.c else workers.c.worker_id
    stmt = select(table.c.uuid, table.c.labels, groups.c.group_name, worker.label("worker")).join(
        groups, groups.c.id == table.c.group_id
    )
    if "reporter_uuid" not in table.c:
        stmt = stmt.outerjoin(workers, workers.c.id == table.c.assigned_worker)
    rows = await conn.execute(stmt.where(table.c.id.in_(ids)))
    await task_events(
        conn,
        [
            {
                "uuid": r.uuid,
                "group": r.group_name,
                "state": state,
                "labels": r.labels,
                "worker": r.worker,
                "data": data or None,
            }
            for r in rows
        ],
    )


async def worker_event(
    conn: AsyncConnection,
    worker_db_id: int | None,
    worker_uuid: uuid.UUID,
    state: str,
    group_names: list[str] | None = None,
) -> None:
    """Record a worker change; its groups decide who may see it."""
    if group_names is None and worker_db_id is not None:
        group_names = [
            r.group_name
            for r in await conn.execute(
                select(groups.c.group_name)
                .join(group_worker, group_worker.c.group_id == groups.c.id)
                .where(group_worker.c.worker_id == worker_db_id)
            )
        ]
    await conn.execute(
        insert(events).values(
            created_at=now(),
            kind="worker",
            groups=group_names or [],
            task_uuid=None,
            worker_uuid=worker_uuid,
            state=state,
            labels=[],
            data=None,
        )
    )
    await _notify(conn)
