"""Submission: N tasks through one ``POST /tasks/submit``, and one by one over a keep-alive connection.

Baselines in the same run: for the batch, inserting the same rows straight into ``active_tasks``
with one SQL statement (PostgreSQL ``unnest``; SQLite ``executemany``); for one by one, ``GET
/health`` over the same connection (the HTTP floor of this coordinator process).
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import coordinator, database, login, submit_batch, task_req


async def raw_insert(db: Any, n: int) -> float:
    ts = datetime.now(UTC)
    spec = json.dumps(
        {"args": ["/bin/true"], "envs": {}, "resources": [], "terminal_output": False, "watch": None}
    )
    gid = int(await db.scalar("SELECT id FROM groups ORDER BY id LIMIT 1"))
    uid = int(await db.scalar("SELECT id FROM users ORDER BY id LIMIT 1"))
    base = 10_000_000
    t0 = time.perf_counter()
    if db.kind == "postgresql":
        conn = await db.pg()
        await conn.execute(
            """INSERT INTO active_tasks (creator_id, group_id, task_id, uuid, tags, labels, created_at,
                   updated_at, state, timeout, priority, spec, cancel_requested)
               SELECT $1, $2, x, gen_random_uuid(), '{}', '{}', $3, $3, 0, 600, 0, $4::json, false
               FROM unnest($5::bigint[]) AS x""",
            uid,
            gid,
            ts,
            spec,
            list(range(base, base + n)),
        )
    else:
        import sqlite3

        conn2 = sqlite3.connect(db.path, timeout=30)
        rows = [
            (
                uid,
                gid,
                base + i,
                uuid.uuid4().hex,
                "[]",
                "[]",
                ts.isoformat(),
                ts.isoformat(),
                0,
                600,
                0,
                spec,
            )
            for i in range(n)
        ]
        with conn2:
            conn2.executemany(
                "INSERT INTO active_tasks (creator_id, group_id, task_id, uuid, tags, labels, created_at,"
                " updated_at, state, timeout, priority, spec, cancel_requested)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,0)",
                rows,
            )
        conn2.close()
    elapsed = time.perf_counter() - t0
    await db.scalar(f"DELETE FROM active_tasks WHERE task_id >= {base}")
    return elapsed


async def run(tmp: Path, *, n_batch: int, n_single: int, kinds: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"n_batch": n_batch, "n_single": n_single, "runs": []}
    for kind in kinds:
        async with database(kind, tmp) as db:
            with coordinator(db.url, tmp / f"coord-sub-{kind}") as coord:
                async with httpx.AsyncClient(base_url=coord.url, timeout=300) as client:
                    client.headers["Authorization"] = f"Bearer {await login(client)}"
                    reqs = [task_req(["/bin/true"], labels=[f"l{i % 10}"]) for i in range(n_batch)]
                    t0 = time.perf_counter()
                    await submit_batch(client, reqs, chunk=n_batch)
                    batch_s = time.perf_counter() - t0
                    raw_s = await raw_insert(db, n_batch)
                    t0 = time.perf_counter()
                    for _ in range(n_single):
                        (await client.post("/tasks", json=task_req(["/bin/true"]))).raise_for_status()
                    single_rps = n_single / (time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    for _ in range(n_single):
                        (await client.get("/health")).raise_for_status()
                    health_rps = n_single / (time.perf_counter() - t0)
        out["runs"].append(
            {
                "database": kind,
                "batch_s": round(batch_s, 3),
                "batch_tasks_per_s": round(n_batch / batch_s, 1),
                "baseline_raw_sql_insert_s": round(raw_s, 3),
                "batch_ratio_raw_over_api": round(raw_s / batch_s, 3),
                "single_req_per_s": round(single_rps, 1),
                "baseline_health_req_per_s": round(health_rps, 1),
                "single_ratio": round(single_rps / health_rps, 3),
            }
        )
    return out
