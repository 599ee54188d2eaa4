"""Scale of state: many archived and waiting tasks in PostgreSQL, then fetch/query/count latency.

The rows are bulk-loaded straight in SQL (``generate_series``; one statement per table), then
VACUUM ANALYZEd, as autovacuum would. Over HTTP against a real coordinator process: p50/p99 of a fetch (claim), a query by
label, by state and by creator (limit 100), and a count. The plans of the statements the coordinator
sends (captured with a ``before_cursor_execute`` hook on an in-process coordinator) are EXPLAINed
(ANALYZE, inside a rolled-back transaction) and saved. Baseline: ``GET /health`` on the same process.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event

from benchmarks.common import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    coordinator,
    database,
    log,
    login,
    md5_list,
    summary_ms,
)
from mitosis.coordinator.db import raw

LOAD_SQL = [
    # Three creators besides the admin, so "by creator" selects a quarter of the rows.
    """INSERT INTO users (username, encrypted_password, created_at, updated_at, auth_signature)
       SELECT 'bench' || i, 'x', now(), now(), 0 FROM generate_series(1, 3) i""",
    """INSERT INTO archived_tasks (id, creator_id, group_id, task_id, uuid, tags, labels, created_at,
           updated_at, state, timeout, priority, spec, result, reporter_uuid)
       SELECT 1000000000 + i, (SELECT id FROM users ORDER BY id OFFSET (i % 4) LIMIT 1), :gid, 1000000000 + i,
              gen_random_uuid(), ARRAY['t' || (i % 4)], ARRAY['sweep' || (i % 1000), 'run' || (i % 7)],
              now() - make_interval(secs => i), now() - make_interval(secs => i), 3, 600, i % 5,
              '{"args": ["/bin/true"], "envs": {}, "resources": [], "terminal_output": false, "watch": null}',
              '{"exit_status": 0, "msg": null}', NULL
       FROM generate_series(1, :archived) i""",
    """INSERT INTO active_tasks (creator_id, group_id, task_id, uuid, tags, labels, created_at, updated_at,
           state, timeout, priority, spec, cancel_requested)
       SELECT (SELECT id FROM users ORDER BY id OFFSET (i % 4) LIMIT 1), :gid, 2000000000 + i, gen_random_uuid(),
              '{}', ARRAY['sweep' || (i % 1000)], now(), now(), 1, 600, i % 5,
              '{"args": ["/bin/true"], "envs": {}, "resources": [], "terminal_output": false, "watch": null}',
              false
       FROM generate_series(1, :waiting) i""",
]


async def _load(db: Any, archived: int, waiting: int) -> float:
    conn = await db.pg()
    gid = await conn.fetchval("SELECT id FROM groups WHERE group_name = $1", ADMIN_USER)
    # The creator subquery is per row: resolve it once into a small table instead.
    t0 = time.monotonic()
    await conn.execute(LOAD_SQL[0])
    ids = [r["id"] for r in await conn.fetch("SELECT id FROM users ORDER BY id LIMIT 4")]
    for sql in LOAD_SQL[1:]:
        sql = sql.replace(
            "(SELECT id FROM users ORDER BY id OFFSET (i % 4) LIMIT 1)", f"(ARRAY{ids})[1 + i % 4]"
        )
        sql = (
            sql.replace(":gid", str(gid))
            .replace(":archived", str(archived))
            .replace(":waiting", str(waiting))
        )
        await conn.execute(sql)
    await conn.execute(f"UPDATE groups SET task_count = 2000000000 + {waiting} WHERE id = {gid}")
    for user in ("bench1", "bench2", "bench3"):
        uid = await conn.fetchval("SELECT id FROM users WHERE username = $1", user)
        await conn.execute("INSERT INTO user_group (user_id, group_id, role) VALUES ($1, $2, 1)", uid, gid)
    # What autovacuum does to a table after this many inserts (autovacuum_vacuum_insert_threshold):
    # statistics, the visibility map (index-only scans) and the GIN indexes' pending lists merged.
    # Measured right after a bulk load without it, a label search also scans the pending list of
    # the 100,000 fresh rows (count by label 15.8 ms instead of 8.6 on 2026-12-04).
    await conn.execute("VACUUM ANALYZE")
    return time.monotonic() - t0


QUERIES: dict[str, dict[str, Any]] = {
    "query_by_label": {"labels": ["sweep42"], "limit": 100},
    "query_by_state": {"states": ["Ready"], "limit": 100},
    "query_by_creator": {"creator_usernames": ["bench2"], "limit": 100},
    "count_by_label": {"labels": ["sweep42"], "count": True},
    "count_by_state": {"states": ["Ready"], "count": True},
}


async def _time_http(url: str, samples: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=url, timeout=60) as c:
        c.headers["Authorization"] = f"Bearer {await login(c)}"
        user_headers = dict(c.headers)
        r = await c.post("/workers", json={"tags": [], "labels": [], "groups": []})
        worker = {"Authorization": f"Bearer {r.json()['token']}"}
        for name, body in [("health_baseline", None), *QUERIES.items()]:
            times = []
            for _ in range(samples):
                t0 = time.perf_counter()
                if body is None:
                    r = await c.get("/health")
                else:
                    r = await c.post(
                        "/tasks/query", json={"group_name": ADMIN_USER, **body}, headers=user_headers
                    )
                times.append(time.perf_counter() - t0)
                r.raise_for_status()
            out[name] = summary_ms(times)
            if body is not None:
                out[name]["result_count"] = r.json()["count"]
        times = []
        for _ in range(samples):
            t0 = time.perf_counter()
            r = await c.get("/workers/tasks", headers=worker)
            times.append(time.perf_counter() - t0)
            r.raise_for_status()
            task = r.json()
            # Hand it straight back to the archive so every sample claims from the full queue.
            await c.post("/workers/tasks", json={"id": task["id"], "op": "Finish"}, headers=worker)
            await c.post(
                "/workers/tasks",
                json={"id": task["id"], "op": {"Commit": {"exit_status": 0}}},
                headers=worker,
            )
        out["fetch_claim"] = summary_ms(times)
    return out


def _capture(db_url: str, data_dir: Path) -> dict[str, list[tuple[str, Any]]]:
    """The SQL each kind of request sends, from an in-process coordinator."""
    import uvicorn

    from benchmarks.common import free_port
    from mitosis.config import CoordinatorSettings
    from mitosis.coordinator.app import create_app

    port = free_port()
    app = create_app(
        CoordinatorSettings(
            bind=f"127.0.0.1:{port}",
            db_url=db_url,
            data_dir=data_dir,
            admin_user=ADMIN_USER,
            admin_password=ADMIN_PASSWORD,
        )
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    captured: dict[str, list[tuple[str, Any]]] = {}
    current = [""]

    def hook(_c: Any, _cur: Any, statement: str, parameters: Any, *_a: Any) -> None:
        if current[0]:
            captured.setdefault(current[0], []).append((statement, parameters))

    def raw_hook(statement: str, args: tuple[Any, ...]) -> None:
        hook(None, None, statement, args)

    engine = app.state.ctx.engine
    event.listen(engine.sync_engine, "before_cursor_execute", hook)
    raw.observers.append(raw_hook)
    try:
        with httpx.Client(base_url=url, timeout=60) as c:
            tok = c.post("/login", json={"username": ADMIN_USER, "md5_password": md5_list(ADMIN_PASSWORD)})
            c.headers["Authorization"] = f"Bearer {tok.json()['token']}"
            wtok = c.post("/workers", json={"tags": [], "labels": [], "groups": []}).json()["token"]
            for name, body in QUERIES.items():
                current[0] = name
                c.post("/tasks/query", json={"group_name": ADMIN_USER, **body}).raise_for_status()
            current[0] = "fetch_claim"
            c.get("/workers/tasks", headers={"Authorization": f"Bearer {wtok}"}).raise_for_status()
            current[0] = ""
    finally:
        raw.observers.remove(raw_hook)
        event.remove(engine.sync_engine, "before_cursor_execute", hook)
        server.should_exit = True
        thread.join(timeout=30)
    return captured


async def _explain(db: Any, captured: dict[str, list[tuple[str, Any]]]) -> dict[str, Any]:
    conn = await db.pg()
    plans: dict[str, Any] = {}
    for name, stmts in captured.items():
        plans[name] = []
        for sql, params in stmts:
            if not sql.lstrip().upper().startswith(("SELECT", "WITH", "UPDATE", "INSERT", "DELETE")):
                continue
            tr = conn.transaction()
            await tr.start()
            try:
                rows = await conn.fetch("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + sql, *(params or ()))
                plan = [r[0] for r in rows]
            except Exception as exc:  # a statement asyncpg cannot re-run as-is: say so in the JSON
                plan = [f"not explained: {exc}"]
            finally:
                await tr.rollback()
            plans[name].append({"sql": " ".join(sql.split())[:400], "plan": plan})
    return plans


async def run(tmp: Path, *, archived: int, waiting: int, samples: int = 200) -> dict[str, Any]:
    async with database("postgresql", tmp) as db:
        with coordinator(db.url, tmp / "coord-state"):
            pass  # migrations and the admin user
        load_s = await _load(db, archived, waiting)
        log(f"state: loaded {archived} archived + {waiting} waiting in {load_s:.1f} s")
        with coordinator(db.url, tmp / "coord-state") as coord:
            timings = await _time_http(coord.url, samples)
        captured = await asyncio.to_thread(_capture, db.url, tmp / "coord-state-inproc")
        plans = await _explain(db, captured)
    return {
        "archived": archived,
        "waiting": waiting,
        "load_s": round(load_s, 1),
        "timings": timings,
        "plans": plans,
    }
