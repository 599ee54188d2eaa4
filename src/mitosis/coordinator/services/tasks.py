"""Tasks from the user's side: submit, read, query, change, label and cancel.

Authorization follows DECISIONS.md: submitting needs Write in the target group (A1); reading needs
Read (A3); changing, labelling and cancelling need Write. Cancel accepts Ready, Pending and Running
tasks (S5): a Running task is only flagged, and its worker kills it and commits it as Cancelled.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    Uuid,
    and_,
    cast,
    delete,
    false,
    func,
    insert,
    literal,
    null,
    select,
    text,
    true,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mitosis.coordinator import errors
from mitosis.coordinator.auth import User
from mitosis.coordinator.db import raw
from mitosis.coordinator.db.dialect import contains_all
from mitosis.coordinator.db.engine import read_only
from mitosis.coordinator.db.tables import active_tasks, archived_tasks, artifacts, groups, user_group, users
from mitosis.coordinator.events import log as events
from mitosis.coordinator.events.notifier import SIGNALS, TASKS, Notifier, submitted_payload
from mitosis.coordinator.services import bounds
from mitosis.coordinator.services.common import (
    effective_group,
    group_by_name,
    now,
    require_role,
    role_in_group,
)
from mitosis.coordinator.services.scheduler import Claimed
from mitosis.wire import models as m
from mitosis.wire.codecs import parse_number_filter
from mitosis.wire.enums import ArtifactContentType, Role, TaskResultMessage, TaskState, UserState, WorkerState
from mitosis.wire.keys import attachment_key_problem

USER_CANCELLATION = {"exit_status": 0, "msg": TaskResultMessage.UserCancellation.value}
CHUNK = 1024


def spec_json(spec: m.TaskSpec) -> Any:
    """Stored spec: every key present, object keys sorted at every level (as 0.6.8 stores it)."""

    def sort(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: sort(value[k]) for k in sorted(value)}
        if isinstance(value, list):
            return [sort(v) for v in value]
        return value

    return sort(spec.model_dump(mode="json"))


def check_resources(spec: m.TaskSpec) -> None:
    for res in spec.resources:
        path = PurePosixPath(res.local_path)
        if not res.local_path or path.is_absolute() or ".." in path.parts:
            raise errors.invalid("Resource local path is absolute or contains `..`")
        if not path.parts or res.local_path.rsplit("/", 1)[-1] in ("", "."):
            # "." or "dir/" names a directory, not the file the resource is downloaded to.
            raise errors.invalid(
                f"Resource local path {res.local_path!r} names a directory: give the file to write, "
                "relative to the resource directory (e.g. data/input.bin)"
            )
        if res.remote_file.Attachment is not None:
            problem = attachment_key_problem(res.remote_file.Attachment.key)
            if problem is not None:
                raise errors.invalid(f"Invalid attachment key in resources: {problem}")


async def notify_tasks(conn: AsyncConnection, count: int | None = None) -> None:
    """Tell other coordinators' waiting workers; ``count`` new tasks, or None for "look again"."""
    if conn.dialect.name == "postgresql":
        payload = "" if count is None else submitted_payload(count)
        await conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": TASKS, "p": payload})


async def notify_signals(conn: AsyncConnection) -> None:
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_notify(:c, '')"), {"c": SIGNALS})


async def _writable_group(conn: AsyncConnection, caller: User, group_name: str) -> Any:
    g = await group_by_name(conn, group_name)
    if g is None:
        raise errors.not_found(f"User or group with name {group_name}")
    if not caller.admin:
        role = await role_in_group(conn, caller.id, g.id)
        if role is None or not role.at_least(Role.Write):
            raise errors.permission_denied(f"submitting to group {group_name} needs the Write role in it")
    return g


async def insert_tasks(
    conn: AsyncConnection,
    group: Any,
    creator_id: int,
    reqs: Sequence[m.SubmitTaskReq],
    *,
    state: TaskState = TaskState.Ready,
    upstream: uuid.UUID | None = None,
) -> list[m.SubmitTaskResp]:
    """Number and insert validated requests of one group in one statement."""
    count = len(reqs)
    last = (
        await conn.execute(
            update(groups)
            .where(groups.c.id == group.id)
            .values(task_count=groups.c.task_count + count, updated_at=now())
            .returning(groups.c.task_count)
        )
    ).scalar_one()
    first = last - count + 1
    ts = now()
    if conn.dialect.name == "postgresql":
        return await _insert_tasks_pg(conn, group, creator_id, reqs, first, ts, state, upstream)
    rows = []
    out = []
    for i, req in enumerate(reqs):
        task_uuid = uuid.uuid4()
        rows.append(
            {
                "creator_id": creator_id,
                "group_id": group.id,
                "task_id": first + i,
                "uuid": task_uuid,
                "tags": req.tags,
                "labels": req.labels,
                "created_at": ts,
                "updated_at": ts,
                "state": state.code,
                "timeout": int(req.timeout.total_seconds()),
                "priority": req.priority,
                "spec": spec_json(req.task_spec),
                "upstream_task_uuid": upstream,
                "cancel_requested": False,
            }
        )
        out.append(m.SubmitTaskResp(task_id=first + i, uuid=task_uuid))
    await conn.execute(insert(active_tasks), rows)
    await events.task_events(
        conn,
        [
            {"uuid": r["uuid"], "group": group.group_name, "state": state.value, "labels": r["labels"]}
            for r in rows
        ],
    )
    if state == TaskState.Ready:
        await notify_tasks(conn, len(rows))
    return out


# PostgreSQL: one task submitted in one statement (atomic on its own). The group's counter is
# bumped only when the caller may submit to it (Write or Admin, or a system admin: DECISIONS A1);
# no row back means nothing was written, and the SQLAlchemy path then says why.
_PG_SUBMIT_ONE = f"""
    WITH u AS (
        SELECT id, admin FROM users
        WHERE username = $3 AND state = {UserState.Active.code}
              AND ($4::bigint IS NULL OR auth_signature = $4)),
    g AS (
        UPDATE groups SET task_count = task_count + 1, updated_at = $1
        FROM u
        WHERE group_name = $2 AND (u.admin OR EXISTS (
            SELECT 1 FROM user_group ug
            WHERE ug.user_id = u.id AND ug.group_id = groups.id AND ug.role >= {Role.Write.code}))
        RETURNING groups.id, group_name, task_count, u.id AS creator_id),
    taker AS (
        SELECT wk.id FROM g, workers wk JOIN users wu ON wu.id = wk.creator_id
        WHERE wk.id = $12 AND wk.state = {WorkerState.Normal.code} AND wu.state = {UserState.Active.code}
          AND $6::text[] <@ wk.tags
          AND EXISTS (SELECT 1 FROM group_worker gw
                      WHERE gw.worker_id = wk.id AND gw.group_id = g.id AND gw.role >= {Role.Write.code})),
    ins AS (
        INSERT INTO active_tasks (creator_id, group_id, task_id, uuid, tags, labels, created_at,
                                  updated_at, state, timeout, priority, spec, cancel_requested,
                                  assigned_worker)
        SELECT g.creator_id, g.id, g.task_count, $5::uuid, $6::text[], $7::text[], $1::timestamptz,
               $1::timestamptz,
               CASE WHEN taker.id IS NULL THEN {TaskState.Ready.code} ELSE {TaskState.Running.code} END,
               $8::bigint, $9::int, $10::json, false, taker.id
        FROM g LEFT JOIN taker ON true
        RETURNING id, task_id, group_id, assigned_worker),
    assigned AS (
        UPDATE workers SET updated_at = $1, assigned_task_id = CASE WHEN $13::boolean
            THEN COALESCE(workers.assigned_task_id, ins.id) ELSE ins.id END
        FROM ins WHERE workers.id = ins.assigned_worker),
    logged AS (
        INSERT INTO events (created_at, kind, groups, task_uuid, worker_uuid, state, labels, data)
        SELECT $1::timestamptz, 'task', ARRAY[g.group_name], $5::uuid, NULL, s.state, $7::text[], NULL
        FROM g, ins, (VALUES (1, '{TaskState.Ready.value}'), (2, '{TaskState.Running.value}')) AS s(step, state)
        WHERE s.step = 1 OR ins.assigned_worker IS NOT NULL
        ORDER BY s.step),
    woken AS (
        SELECT pg_notify('{TASKS}', $11) FROM ins WHERE ins.assigned_worker IS NULL)
    -- "notified" is read by nobody: a plain SELECT in WITH runs only when referenced.
    SELECT ins.id, ins.task_id, ins.group_id, ins.assigned_worker IS NOT NULL AS handed,
           (SELECT count(*) FROM woken) AS notified
    FROM ins
"""
"""One task submitted in one statement: the user is still active and, for a token's holder, the
token's signature current (what ``auth.current_user`` checks; ``$4`` NULL for a caller already
authenticated otherwise), the user may write to the group, the group's task counter, the task, its
event and the wake-up. No row means one of the checks failed: the caller then goes the long way
round, which says which.

With ``$12`` a worker parked in a long-poll here (``$13``: whether a task it already runs stays its
current one), the task goes straight to that worker when the worker may run it (the checks of
``scheduler.claim``: a Normal worker of an Active user, Write on the group, the task's tags among
its own): Running and assigned, the worker pointed at it, a Running event after the Ready one, and
no NOTIFY (no other coordinator's waiter has anything to look for). Otherwise ``$12`` changes
nothing."""


# PostgreSQL: a batch of tasks and their events, each in one statement over arrays (the rows of a
# 10,000-task submission cost SQLAlchemy's per-row parameter processing several times over).
_PG_INSERT_TASKS = """
    WITH ins AS (
        INSERT INTO active_tasks (creator_id, group_id, task_id, uuid, tags, labels, created_at,
                                  updated_at, state, timeout, priority, spec, upstream_task_uuid,
                                  cancel_requested)
        SELECT $1::bigint, $2::bigint, t.task_id, t.uuid, t.tags::text[], t.labels::text[],
               $3::timestamptz, $3::timestamptz, $4::int, t.timeout, t.priority, t.spec::json,
               $5::uuid, false
        FROM unnest($6::bigint[], $7::uuid[], $8::text[], $9::text[], $10::bigint[], $11::int[],
                    $12::text[]) AS t(task_id, uuid, tags, labels, timeout, priority, spec)
        RETURNING uuid, labels)
    INSERT INTO events (created_at, kind, groups, task_uuid, worker_uuid, state, labels, data)
    SELECT $3::timestamptz, 'task', ARRAY[$13::text], ins.uuid, NULL, $14::text, ins.labels, NULL FROM ins
"""


def _pg_text_array(values: Sequence[str]) -> str:
    """A ``text[]`` literal (the arrays of a batch travel as one text each: asyncpg takes no
    arrays of arrays of uneven length)."""
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


async def _insert_tasks_pg(
    conn: AsyncConnection,
    group: Any,
    creator_id: int,
    reqs: Sequence[m.SubmitTaskReq],
    first: int,
    ts: datetime,
    state: TaskState,
    upstream: uuid.UUID | None,
) -> list[m.SubmitTaskResp]:
    uuids = [uuid.uuid4() for _ in reqs]
    pg: Any = (await conn.get_raw_connection()).driver_connection  # in the caller's transaction
    await pg.execute(
        _PG_INSERT_TASKS,
        creator_id,
        group.id,
        ts,
        state.code,
        upstream,
        [first + i for i in range(len(reqs))],
        uuids,
        [_pg_text_array(r.tags) for r in reqs],
        [_pg_text_array(r.labels) for r in reqs],
        [int(r.timeout.total_seconds()) for r in reqs],
        [r.priority for r in reqs],
        [json.dumps(spec_json(r.task_spec)) for r in reqs],
        group.group_name,
        state.value,
    )
    if state == TaskState.Ready:
        await notify_tasks(conn, len(reqs))
    return [m.SubmitTaskResp(task_id=first + i, uuid=u) for i, u in enumerate(uuids)]


async def submit_with_token(
    engine: AsyncEngine, notifier: Notifier, username: str, signature: int | None, req: m.SubmitTaskReq
) -> m.SubmitTaskResp | None:
    """Route 21's common case on PostgreSQL: the user check and the submission in one round trip
    (``_PG_SUBMIT_ONE``; ``signature`` None skips the token check, for a caller authenticated
    otherwise). None when that cannot answer (SQLite, a spec to refuse, a user or group check that
    failed): the caller authenticates as usual and calls :func:`submit_checked`, which raises the
    precise error in 0.6.8's order (credentials first, then the spec, then the group)."""
    if not raw.available(engine):
        return None
    try:
        check_resources(req.task_spec)
    except errors.ApiError:
        return None
    task_uuid = uuid.uuid4()
    spec = spec_json(req.task_spec)
    timeout = int(req.timeout.total_seconds())
    # An idle worker of this coordinator gets the task in this statement if it may run it (a
    # hand-off): no wake-up, claim and second commit between the submission and the worker.
    waiter = notifier.reserve()
    handed: object = 0
    try:
        async with raw.connection(engine) as pg:
            row = await pg.fetchrow(
                _PG_SUBMIT_ONE,
                now(),
                req.group_name,
                username,
                signature,
                task_uuid,
                list(req.tags),
                list(req.labels),
                timeout,
                req.priority,
                json.dumps(spec),
                submitted_payload(1),
                None if waiter is None else waiter[1].worker_db_id,
                waiter is not None and waiter[1].keep_assigned,
            )
        if row is not None and row["handed"]:
            handed = Claimed(
                id=row["id"],
                uuid=task_uuid,
                timeout=timeout,
                upstream_task_uuid=None,
                spec=spec,
                labels=list(req.labels),
                group_id=row["group_id"],
                priority=req.priority,
            )
    finally:
        if waiter is not None:
            notifier.answer(waiter[0], handed)
    if row is None:
        return None
    if not row["handed"]:
        notifier.offer(1)
    return m.SubmitTaskResp(task_id=row["task_id"], uuid=task_uuid)


async def submit(
    engine: AsyncEngine, notifier: Notifier, caller: User, req: m.SubmitTaskReq
) -> m.SubmitTaskResp:
    """One task from an authenticated caller (the dashboard's form): one statement on PostgreSQL
    when every check passes, else :func:`submit_checked`."""
    done = await submit_with_token(engine, notifier, caller.username, None, req)
    return done if done is not None else await submit_checked(engine, notifier, caller, req)


async def submit_checked(
    engine: AsyncEngine, notifier: Notifier, caller: User, req: m.SubmitTaskReq
) -> m.SubmitTaskResp:
    """One task, each check a statement of its own: raises the precise error when one fails."""
    check_resources(req.task_spec)
    async with engine.begin() as conn:
        g = await _writable_group(conn, caller, req.group_name)
        [resp] = await insert_tasks(conn, g, caller.id, [req])
    notifier.offer(1)
    return resp


async def submit_many(
    engine: AsyncEngine, notifier: Notifier, caller: User, reqs: list[m.SubmitTaskReq]
) -> m.TasksSubmitResp:
    if not reqs:
        raise errors.invalid("Tasks list cannot be empty")
    results: list[m.SubmitOk | m.SubmitErr | None] = [None] * len(reqs)
    by_group: dict[str, list[int]] = {}
    for i, req in enumerate(reqs):
        try:
            check_resources(req.task_spec)
        except errors.ApiError as exc:
            results[i] = m.SubmitErr(Err=m.ErrorMsg(msg=exc.msg))
            continue
        by_group.setdefault(req.group_name, []).append(i)
    async with engine.begin() as conn:
        for group_name, indices in by_group.items():
            try:
                g = await _writable_group(conn, caller, group_name)
            except errors.ApiError as exc:
                for i in indices:
                    results[i] = m.SubmitErr(Err=m.ErrorMsg(msg=exc.msg))
                continue
            created = await insert_tasks(conn, g, caller.id, [reqs[i] for i in indices])
            for i, resp in zip(indices, created, strict=True):
                results[i] = m.SubmitOk(Ok=resp)
    notifier.offer(sum(isinstance(r, m.SubmitOk) for r in results))
    return m.TasksSubmitResp(results=[r for r in results if r is not None])


# ------------------------------------------------------------------------------------------- reads


def _task_select(table: Any) -> Select[Any]:
    reporter = table.c.reporter_uuid if table is archived_tasks else cast(null(), Uuid).label("reporter_uuid")
    return (
        select(
            table.c.id,
            table.c.uuid,
            users.c.username.label("creator_username"),
            groups.c.group_name,
            table.c.group_id,
            table.c.task_id,
            table.c.tags,
            table.c.labels,
            table.c.created_at,
            table.c.updated_at,
            table.c.state,
            table.c.timeout,
            table.c.priority,
            table.c.spec,
            table.c.result,
            table.c.upstream_task_uuid,
            table.c.downstream_task_uuid,
            reporter.label("reporter_uuid"),
            (table.c.cancel_requested if table is active_tasks else false()).label("cancel_requested"),
            # Which table the row came from, so callers need not look again.
            (true() if table is archived_tasks else false()).label("archived"),
        )
        .join(users, users.c.id == table.c.creator_id)
        .join(groups, groups.c.id == table.c.group_id)
    )


async def find_task(conn: AsyncConnection, task_uuid: uuid.UUID) -> Any:
    """The task row (active first, then archived) with creator and group names, or None."""
    for table in (active_tasks, archived_tasks):
        row = (await conn.execute(_task_select(table).where(table.c.uuid == task_uuid))).first()
        if row is not None:
            return row
    return None


async def task_response(conn: AsyncConnection, row: Any) -> m.TaskQueryResp:
    arts = await conn.execute(
        select(artifacts).where(artifacts.c.task_id == row.uuid).order_by(artifacts.c.content_type)
    )
    return m.TaskQueryResp(
        info=m.ParsedTaskQueryInfo(
            **_common_fields(row),
            spec=m.TaskSpec.model_validate(row.spec),
            result=None if row.result is None else m.TaskResultSpec.model_validate(row.result),
        ),
        artifacts=[
            m.ArtifactQueryResp(
                content_type=ArtifactContentType.from_code(a.content_type),
                size=a.size,
                created_at=a.created_at,
                updated_at=a.updated_at,
            )
            for a in arts
        ],
    )


async def get_task(engine: AsyncEngine, caller: User, task_uuid: uuid.UUID) -> m.TaskQueryResp:
    async with read_only(engine).connect() as conn:
        row = await find_task(conn, task_uuid)
        if row is None:
            raise errors.not_found(f"Task with uuid {task_uuid}")
        await require_role(conn, caller, row.group_id, row.group_name, Role.Read)
        return await task_response(conn, row)


def _compare(expr: Any, spec: str) -> ColumnElement[bool]:
    try:
        op, value = parse_number_filter(spec)
    except ValueError as exc:
        raise errors.invalid(str(exc)) from None
    ops = {
        "=": expr == value,
        "!=": expr != value,
        ">": expr > value,
        ">=": expr >= value,
        "<": expr < value,
        "<=": expr <= value,
    }
    result: ColumnElement[bool] = ops[op]
    return result


def validate_filter(f: m.TaskFilter) -> None:
    if f.tags is not None and not f.tags:
        raise errors.invalid("Tags cannot be empty if specified")
    if f.labels is not None and not f.labels:
        raise errors.invalid("Labels cannot be empty if specified")
    if f.creator_usernames is not None and not f.creator_usernames:
        raise errors.invalid("Creator username cannot be empty if specified")
    if f.states is not None and not f.states:
        raise errors.invalid("State cannot be empty if specified")


def filter_clauses(
    table: Any, f: m.TaskFilter, group_id: int, dialect: str, reporter: uuid.UUID | None = None
) -> list[ColumnElement[bool]]:
    clauses: list[ColumnElement[bool]] = [table.c.group_id == group_id]
    if f.creator_usernames:
        clauses.append(
            table.c.creator_id.in_(select(users.c.id).where(users.c.username.in_(f.creator_usernames)))
        )
    if f.tags:
        clauses.append(contains_all(table.c.tags, f.tags, dialect))
    if f.labels:
        clauses.append(contains_all(table.c.labels, f.labels, dialect))
    if f.states:
        clauses.append(table.c.state.in_([s.code for s in f.states]))
    if f.exit_status is not None:
        # Numeric comparison (0.6.8 compared text for < and >, behavior.md Q1).
        clauses.append(table.c.result.is_not(None))
        clauses.append(_compare(table.c.result["exit_status"].as_integer(), f.exit_status))
    if f.priority is not None:
        clauses.append(_compare(table.c.priority, f.priority))
    if reporter is not None:
        clauses.append(table.c.reporter_uuid == reporter if table is archived_tasks else false())
    return clauses


_COMMON = (
    "uuid",
    "creator_username",
    "group_name",
    "task_id",
    "tags",
    "labels",
    "created_at",
    "updated_at",
    "timeout",
    "priority",
    "upstream_task_uuid",
    "downstream_task_uuid",
    "reporter_uuid",
)


def _common_fields(row: Any) -> dict[str, Any]:
    """The fields TaskQueryInfo and ParsedTaskQueryInfo share (they differ in spec and result)."""
    return {name: getattr(row, name) for name in _COMMON} | {"state": TaskState.from_code(row.state)}


def _info(row: Any) -> m.TaskQueryInfo:
    return m.TaskQueryInfo(**_common_fields(row), spec=row.spec, result=row.result)


async def matching_uuids(
    conn: AsyncConnection, caller: User, f: m.TaskFilter, reporter: uuid.UUID | None
) -> Any:
    """(group, uuids) of every task matching a filter, for batch artifact operations."""
    validate_filter(f)
    g = await effective_group(conn, caller, f.group_name, Role.Read)
    uuids: list[uuid.UUID] = []
    for table in (active_tasks, archived_tasks):
        rows = await conn.execute(
            select(table.c.uuid)
            .where(*filter_clauses(table, f, g.id, conn.dialect.name, reporter))
            .limit(m.MAX_BATCH_ITEMS + 1 - len(uuids))
        )
        uuids.extend(r.uuid for r in rows)
    if len(uuids) > m.MAX_BATCH_ITEMS:
        # Batch transfers are bounded per request (issue 4): one reply never lists unbounded URLs.
        raise errors.invalid(
            f"more than {m.MAX_BATCH_ITEMS} tasks match this filter; narrow it (labels, states, creators) "
            "or use the uuid-list form in chunks"
        )
    return g, uuids


ARCHIVED_STATES = frozenset({TaskState.Finished, TaskState.Cancelled})
"""The only states an archived task can have: every move into ``archived_tasks`` (a worker's commit,
a user's cancel of a waiting task, the coordinator's timeout and shutdown cancels) writes one of
these two (behavior.md 2.6)."""
ACTIVE_STATES = frozenset({TaskState.Pending, TaskState.Ready, TaskState.Running, *ARCHIVED_STATES})
"""An active task may also be Finished or Cancelled: reported by its worker, not yet committed."""


def query_tables(f: m.TaskFilter, reporter: uuid.UUID | None) -> list[Any]:
    """The task tables that can hold a match for ``f``; the others need not be read at all.

    A state filter can rule a table out (a Ready page never reads the archive, whose index walk
    would otherwise scan every archived task of the group to find none), and so can ``reporter``,
    which only archived tasks have. Skipping a table changes no result, only the work.
    """
    tables = []
    if reporter is None and (not f.states or ACTIVE_STATES.intersection(f.states)):
        tables.append(active_tasks)
    if not f.states or ARCHIVED_STATES.intersection(f.states):
        tables.append(archived_tasks)
    return tables


async def _count(conn: AsyncConnection, tables: list[Any], req: m.TasksQueryReq, group_id: int) -> int:
    """Matches in ``tables``, counted in one statement (a scalar subquery per table)."""
    if not tables:
        return 0
    counts = [
        select(func.count())
        .select_from(t)
        .where(*filter_clauses(t, req, group_id, conn.dialect.name, req.reporter_uuid))
        .scalar_subquery()
        for t in tables
    ]
    total = counts[0] if len(counts) == 1 else counts[0] + counts[1]
    return int((await conn.execute(select(total))).scalar_one())


async def query(
    engine: AsyncEngine, caller: User, req: m.TasksQueryReq, max_rows: int | None = None
) -> m.TasksQueryResp:
    """Route 27. With ``max_rows`` (the API's ``max_query_rows``) a reply never holds more rows:
    a larger ``limit``, or more matches and no ``limit``, is a 400 (``services.bounds``)."""
    validate_filter(req)
    if not req.count:
        bounds.check_limit(req.limit, max_rows)
    limit = bounds.fetch_limit(req.limit, max_rows)
    async with read_only(engine).connect() as conn:
        dialect = conn.dialect.name
        if dialect == "postgresql":
            # Plan these statements for their actual filter values: after five runs PostgreSQL
            # would switch to a generic plan, which for a label (array containment) filter made the
            # query 4x slower at 1 M archived tasks (docs/performance.md, state scale). Only for
            # this transaction; the hot statements keep their cached plans.
            await conn.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
        g = await effective_group(conn, caller, req.group_name, Role.Read)
        tables = query_tables(req, req.reporter_uuid)
        if req.count:
            total = await _count(conn, tables, req, g.id)
            return m.TasksQueryResp(count=total, tasks=[], group_name=g.group_name)
        if not tables:
            return m.TasksQueryResp(count=0, tasks=[], group_name=g.group_name)
        parts = [
            _task_select(t).where(*filter_clauses(t, req, g.id, dialect, req.reporter_uuid)) for t in tables
        ]
        stmt: Select[Any]
        if len(tables) == 1:
            stmt = parts[0].order_by(tables[0].c.id.desc())
        else:
            if limit is not None:
                # Each side only needs its newest offset+limit rows: sorting them per table (an index
                # walk) before the union keeps a page cheap however many tasks the archive holds.
                keep = min(limit + (req.offset or 0), m.I64_MAX)  # both databases hold 64-bit limits
                parts = [p.order_by(t.c.id.desc()).limit(keep) for p, t in zip(parts, tables, strict=True)]
            combined = union_all(*(p.subquery().select() for p in parts)).subquery()
            stmt = select(combined).order_by(combined.c.id.desc())
        if limit is not None:
            stmt = stmt.limit(limit)
        if req.offset:
            stmt = stmt.offset(req.offset)
        rows = (await conn.execute(stmt)).all()
        if max_rows is not None and len(rows) > max_rows:
            raise bounds.too_many("tasks", await _count(conn, tables, req, g.id), max_rows)
    tasks = [_info(r) for r in rows]
    return m.TasksQueryResp(count=len(tasks), tasks=tasks, group_name=g.group_name)


# ----------------------------------------------------------------------------------------- changes


async def _writable_active(
    conn: AsyncConnection, caller: User, task_uuid: uuid.UUID, states: set[TaskState]
) -> Any:
    row = (await conn.execute(_task_select(active_tasks).where(active_tasks.c.uuid == task_uuid))).first()
    if row is None or TaskState.from_code(row.state) not in states:
        raise errors.not_found(f"Task with uuid {task_uuid}")
    await require_role(conn, caller, row.group_id, row.group_name, Role.Write, missing_status=400)
    return row


async def change(
    engine: AsyncEngine, notifier: Notifier, caller: User, task_uuid: uuid.UUID, req: m.ChangeTaskReq
) -> None:
    if req.tags is None and req.timeout is None and req.priority is None and req.task_spec is None:
        raise errors.invalid("No change specified")
    if req.task_spec is not None:
        check_resources(req.task_spec)
    values: dict[str, Any] = {"updated_at": now()}
    if req.tags is not None:
        values["tags"] = req.tags
    if req.timeout is not None:
        values["timeout"] = int(req.timeout.total_seconds())
    if req.priority is not None:
        values["priority"] = req.priority
    if req.task_spec is not None:
        values["spec"] = spec_json(req.task_spec)
    async with engine.begin() as conn:
        row = await _writable_active(conn, caller, task_uuid, {TaskState.Ready})
        await conn.execute(
            update(active_tasks)
            .where(active_tasks.c.id == row.id, active_tasks.c.state == TaskState.Ready.code)
            .values(**values)
        )
        await events.task_event_for_ids(conn, active_tasks, [row.id], TaskState.Ready.value, change="task")
        await notify_tasks(conn)
    notifier.wake(TASKS)


async def update_labels(engine: AsyncEngine, caller: User, task_uuid: uuid.UUID, labels: list[str]) -> None:
    async with engine.begin() as conn:
        row = await find_task(conn, task_uuid)
        if row is None:
            raise errors.not_found(f"Task with uuid {task_uuid}")
        await require_role(conn, caller, row.group_id, row.group_name, Role.Write, missing_status=400)
        table = archived_tasks if row.archived else active_tasks
        await conn.execute(update(table).where(table.c.id == row.id).values(labels=labels, updated_at=now()))
        await events.task_event_for_ids(
            conn, table, [row.id], TaskState.from_code(row.state).value, change="labels"
        )


async def archive_cancelled(conn: AsyncConnection, where: ColumnElement[bool]) -> list[uuid.UUID]:
    """Move matching *waiting* active tasks to the archive as Cancelled by the user."""
    waiting = and_(where, active_tasks.c.state.in_([TaskState.Ready.code, TaskState.Pending.code]))
    cols = [c.name for c in active_tasks.c if c.name != "cancel_requested"]
    ts = now()
    src = select(
        *[
            (
                literal(TaskState.Cancelled.code).label("state")
                if c == "state"
                else literal(ts, active_tasks.c.updated_at.type).label(c)
                if c == "updated_at"
                else literal(USER_CANCELLATION, active_tasks.c.result.type).label(c)
                if c == "result"
                else active_tasks.c[c]
            )
            for c in cols
        ]
    ).where(waiting)
    moved = (
        await conn.execute(
            insert(archived_tasks)
            .from_select(cols, src)
            .returning(archived_tasks.c.id, archived_tasks.c.uuid)
        )
    ).all()
    if moved:
        await conn.execute(delete(active_tasks).where(active_tasks.c.uuid.in_([r.uuid for r in moved])))
        await events.task_event_for_ids(
            conn, archived_tasks, [r.id for r in moved], TaskState.Cancelled.value, msg="UserCancellation"
        )
    return [r.uuid for r in moved]


async def request_running_cancel(conn: AsyncConnection, where: ColumnElement[bool]) -> list[uuid.UUID]:
    rows = (
        await conn.execute(
            update(active_tasks)
            .where(where, active_tasks.c.state == TaskState.Running.code)
            .values(cancel_requested=True, updated_at=now())
            .returning(active_tasks.c.id, active_tasks.c.uuid)
        )
    ).all()
    if rows:
        await events.task_event_for_ids(
            conn, active_tasks, [r.id for r in rows], TaskState.Running.value, cancel_requested=True
        )
        await notify_signals(conn)
    return [r.uuid for r in rows]


async def cancel(engine: AsyncEngine, notifier: Notifier, caller: User, task_uuid: uuid.UUID) -> None:
    async with engine.begin() as conn:
        row = await _writable_active(
            conn, caller, task_uuid, {TaskState.Ready, TaskState.Pending, TaskState.Running}
        )
        where = active_tasks.c.id == row.id
        done = await archive_cancelled(conn, where) or await request_running_cancel(conn, where)
        if not done:
            raise errors.not_found(f"Task with uuid {task_uuid}")
    notifier.wake(SIGNALS)


def _cancellable_states(requested: list[TaskState] | None) -> set[TaskState]:
    allowed = {TaskState.Ready, TaskState.Pending, TaskState.Running}
    if not requested:
        return allowed
    return allowed & set(requested)


async def cancel_by_filter(
    engine: AsyncEngine, notifier: Notifier, caller: User, req: m.TasksCancelByFilterReq
) -> m.TasksCancelByFilterResp:
    validate_filter(req)
    states = _cancellable_states(req.states)
    flt = req.model_copy(update={"states": None})
    async with engine.begin() as conn:
        g = await effective_group(conn, caller, req.group_name, Role.Write)
        if not states:
            # Asking only for states that cannot be cancelled cancels nothing (behavior.md S7 fixed).
            return m.TasksCancelByFilterResp(cancelled_count=0, group_name=g.group_name)
        where = and_(
            *filter_clauses(active_tasks, flt, g.id, conn.dialect.name),
            active_tasks.c.state.in_([s.code for s in states]),
        )
        count = len(await archive_cancelled(conn, where))
        if TaskState.Running in states:
            count += len(await request_running_cancel(conn, where))
    notifier.wake(SIGNALS)
    return m.TasksCancelByFilterResp(cancelled_count=count, group_name=g.group_name)


async def cancel_by_uuids(
    engine: AsyncEngine, notifier: Notifier, caller: User, uuids: list[uuid.UUID]
) -> m.TasksCancelByUuidsResp:
    if not uuids:
        raise errors.invalid("UUIDs list cannot be empty")
    done: set[uuid.UUID] = set()
    for start in range(0, len(uuids), CHUNK):
        chunk = uuids[start : start + CHUNK]
        async with engine.begin() as conn:
            where: ColumnElement[bool] = active_tasks.c.uuid.in_(chunk)
            if not caller.admin:
                writable = select(user_group.c.group_id).where(
                    user_group.c.user_id == caller.id, user_group.c.role >= Role.Write.code
                )
                where = and_(where, active_tasks.c.group_id.in_(writable))
            done.update(await archive_cancelled(conn, where))
            done.update(await request_running_cancel(conn, where))
    notifier.wake(SIGNALS)
    return m.TasksCancelByUuidsResp(
        cancelled_count=len(done), failed_uuids=[u for u in uuids if u not in done]
    )
