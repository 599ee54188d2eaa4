"""Who runs what: the claim of Ready tasks by one worker, decided by the database alone.

Eligibility (behavior.md §5.1, DECISIONS D1): the worker holds Write or Admin on the task's group
and the task's tags are a subset of the worker's tags; higher priority first, then oldest first.
PostgreSQL claims with ``FOR UPDATE SKIP LOCKED`` so concurrent claims from any number of
coordinators never return the same task; SQLite runs the claim as one ``UPDATE ... RETURNING``
inside a ``BEGIN IMMEDIATE`` transaction (one writer at a time).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import JSON, BigInteger, Uuid, bindparam, exists, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mitosis.coordinator.db import raw
from mitosis.coordinator.db.tables import active_tasks, users, workers
from mitosis.coordinator.db.types import StrArray, UtcDateTime
from mitosis.coordinator.events import log as events
from mitosis.coordinator.services.common import now

_RETURNED = {
    "id": BigInteger,
    "uuid": Uuid,
    "timeout": BigInteger,
    "upstream_task_uuid": Uuid,
    "spec": JSON,
    "labels": StrArray,
    "group_id": BigInteger,
    "priority": BigInteger,
}

# The best Ready tasks of each group the worker serves come from the partial claim index
# (group_id, priority DESC, id WHERE state = 1) — an index walk per group, whatever the backlog — and
# the best of those win. One round trip claims the tasks, points the worker at the first (unless it
# is busy with one already: a batch claim tops up a worker that is running a task) and records the
# Running events (the events_notify trigger sends the NOTIFY). The worker's creator must be Active
# (DECISIONS A7); when no row comes back, fetch tells a locked creator apart from an empty queue
# with a separate look.
_PG_CLAIM = """
    WITH w AS (
        SELECT wk.tags FROM workers wk JOIN users u ON u.id = wk.creator_id
        WHERE wk.id = $1 AND wk.state = 0 AND u.state = 0),
    cand AS (
        SELECT best.id FROM w, group_worker gw, LATERAL (
            SELECT t.id, t.priority FROM active_tasks t
            WHERE t.group_id = gw.group_id AND t.state = 1 AND t.assigned_worker IS NULL
              AND NOT t.cancel_requested AND t.tags <@ w.tags
            ORDER BY t.priority DESC, t.id
            LIMIT $3
            FOR UPDATE OF t SKIP LOCKED) best
        WHERE gw.worker_id = $1 AND gw.role >= 1
        ORDER BY best.priority DESC, best.id
        LIMIT $3),
    claimed AS (
        UPDATE active_tasks a SET state = 2, assigned_worker = $1, updated_at = $2
        FROM cand WHERE a.id = cand.id
        RETURNING a.id, a.uuid, a.timeout, a.upstream_task_uuid, a.spec, a.labels, a.group_id, a.priority),
    assigned AS (
        UPDATE workers SET updated_at = $2, assigned_task_id = CASE WHEN $4::boolean
            THEN COALESCE(workers.assigned_task_id, first.id) ELSE first.id END
        FROM (SELECT id FROM claimed ORDER BY priority DESC, id LIMIT 1) first
        WHERE workers.id = $1),
    logged AS (
        INSERT INTO events (created_at, kind, groups, task_uuid, worker_uuid, state, labels, data)
        SELECT $2, 'task', ARRAY[g.group_name], c.uuid, NULL, 'Running', c.labels, NULL
        FROM claimed c JOIN groups g ON g.id = c.group_id)
    SELECT id, uuid, timeout, upstream_task_uuid, spec, labels, group_id, priority,
           EXISTS (SELECT 1 FROM active_tasks h WHERE h.assigned_worker = $1) AS held_before
    FROM claimed
    ORDER BY priority DESC, id
    """

_SQLITE_CLAIM = text(
    """
    UPDATE active_tasks SET state = 2, assigned_worker = :wid, updated_at = :now
    WHERE id IN (
        SELECT t.id FROM active_tasks t
        WHERE t.state = 1 AND t.assigned_worker IS NULL AND NOT t.cancel_requested
          AND EXISTS (
              SELECT 1 FROM workers w JOIN users u ON u.id = w.creator_id
              WHERE w.id = :wid AND w.state = 0 AND u.state = 0)
          AND t.group_id IN (SELECT gw.group_id FROM group_worker gw WHERE gw.worker_id = :wid AND gw.role >= 1)
          AND NOT EXISTS (
              SELECT 1 FROM json_each(t.tags) tt
              WHERE tt.value NOT IN (SELECT wt.value FROM json_each((SELECT tags FROM workers WHERE id = :wid)) wt))
        ORDER BY t.priority DESC, t.id
        LIMIT :n)
    RETURNING id, uuid, timeout, upstream_task_uuid, spec, labels, group_id, priority
    """
)


# PostgreSQL: a worker's Finish/Cancel report and its event in one statement.
_PG_FINISH = text(
    """
    WITH done AS (
        UPDATE active_tasks SET state = :state, updated_at = :now
        WHERE id = :id AND assigned_worker = :wid
        RETURNING uuid, group_id, labels),
    logged AS (
        INSERT INTO events (created_at, kind, groups, task_uuid, worker_uuid, state, labels, data)
        SELECT :now, 'task', ARRAY[g.group_name], d.uuid, NULL, :state_name, d.labels, NULL
        FROM done d JOIN groups g ON g.id = d.group_id)
    SELECT uuid FROM done
    """
).bindparams(bindparam("now", type_=UtcDateTime()))


def finish_statement() -> Any:
    return _PG_FINISH


def finish_params(task_id: int, worker_db_id: int, state: int, state_name: str) -> dict[str, Any]:
    now_ts: datetime = now()
    return {"id": task_id, "wid": worker_db_id, "state": state, "state_name": state_name, "now": now_ts}


_SQLITE_CLAIM_STMT = _SQLITE_CLAIM.bindparams(bindparam("now", type_=UtcDateTime())).columns(**_RETURNED)
_PG_CREATOR_STATE = """
    SELECT u.state, EXISTS (SELECT 1 FROM active_tasks h WHERE h.assigned_worker = w.id) AS held_before
    FROM users u JOIN workers w ON w.creator_id = u.id WHERE w.id = $1
"""


@dataclass(frozen=True)
class Claimed:
    """A task just claimed: what the worker is told, plus what the caller needs for events."""

    id: int
    uuid: UUID
    timeout: int
    upstream_task_uuid: UUID | None
    spec: dict[str, Any]
    labels: list[str]
    group_id: int
    priority: int


@dataclass(frozen=True)
class ClaimOutcome:
    rows: list[Claimed]
    creator_state: int | None
    """When nothing was claimed: the state of the worker's creator (None: the worker is gone)."""
    held_before: bool
    """Whether the worker held tasks before this claim (snapshot of the claim itself)."""


async def claim(engine: AsyncEngine, worker_db_id: int, n: int, *, keep_assigned: bool) -> ClaimOutcome:
    """Assign up to ``n`` of the best eligible Ready tasks to the worker, best first.

    The worker's ``assigned_task_id`` (the task it runs) becomes the first of them; with
    ``keep_assigned`` a task it already runs stays its current one (a batch claim while busy).
    An empty claim also says why it was empty (the creator's state), and every claim whether the
    worker already held tasks, all in the same round trip."""
    if raw.available(engine):
        # One statement, atomic on its own: no BEGIN/COMMIT round trips.
        async with raw.connection(engine) as pg:
            records = await pg.fetch(_PG_CLAIM, worker_db_id, now(), n, keep_assigned)
            if not records:
                look = await pg.fetchrow(_PG_CREATOR_STATE, worker_db_id)
                if look is None:
                    return ClaimOutcome([], None, False)
                return ClaimOutcome([], look["state"], look["held_before"])
        return ClaimOutcome([_claimed(r["spec"], r) for r in records], None, records[0]["held_before"])
    async with engine.begin() as conn:
        held_before = (
            await conn.execute(
                select(workers.c.id).where(workers.c.id == worker_db_id).where(_holds(worker_db_id))
            )
        ).first() is not None
        rows = await _sqlite_claim(conn, worker_db_id, n, keep_assigned)
        if not rows:
            state = (
                await conn.execute(
                    select(users.c.state)
                    .join(workers, workers.c.creator_id == users.c.id)
                    .where(workers.c.id == worker_db_id)
                )
            ).scalar()
            return ClaimOutcome([], state, held_before)
    return ClaimOutcome(rows, None, held_before)


def _holds(worker_db_id: int) -> Any:
    return exists().where(active_tasks.c.assigned_worker == worker_db_id)


def _claimed(spec: Any, r: Any) -> Claimed:
    return Claimed(
        id=r["id"],
        uuid=r["uuid"],
        timeout=r["timeout"],
        upstream_task_uuid=r["upstream_task_uuid"],
        spec=json.loads(spec) if isinstance(spec, str) else spec,
        labels=list(r["labels"]),
        group_id=r["group_id"],
        priority=r["priority"],
    )


async def _sqlite_claim(
    conn: AsyncConnection, worker_db_id: int, n: int, keep_assigned: bool
) -> list[Claimed]:
    ts = now()
    params = {"wid": worker_db_id, "now": ts, "n": n}
    found = (await conn.execute(_SQLITE_CLAIM_STMT, params)).mappings().all()
    rows = sorted((_claimed(r["spec"], r) for r in found), key=lambda r: (-r.priority, r.id))
    if rows:
        current = workers.c.assigned_task_id
        await conn.execute(
            update(workers)
            .where(workers.c.id == worker_db_id)
            .values(
                assigned_task_id=func.coalesce(current, rows[0].id) if keep_assigned else rows[0].id,
                updated_at=ts,
            )
        )
        await events.task_events(
            conn,
            [
                {
                    "uuid": r.uuid,
                    "group": await events.group_name(conn, r.group_id),
                    "state": "Running",
                    "labels": r.labels,
                }
                for r in rows
            ],
        )
    return rows
