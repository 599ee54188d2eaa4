"""Server time to render the dashboard's task list with 100,000 tasks, on SQLite and PostgreSQL.

Run: ``.venv/bin/python benchmarks/ui_render.py [--tasks 100000] [--renders 25] [--backends sqlite,postgres]``
(``--pg URL`` or ``MITO_BENCH_PG`` for another PostgreSQL server; about 40 s on a 2-core machine).

The coordinator app runs in this process behind httpx's ASGI transport (no sockets), so the time
measured is the server's: session check, the task query, template rendering. Tasks are
bulk-inserted with SQL into one group: 90% archived (Finished, half with exit 0), 10% active
(Ready). PostgreSQL uses a throwaway database on ``--pg`` (created and dropped here). Prints JSON.

Baseline in the same run: ``GET /health`` through the same transport and app (no session, no query,
no template), timed the same way; each page's ``ratio_to_health`` is its median over that median,
the figure to compare across runs on a machine whose speed varies from hour to hour.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy import insert, select, update

from mitosis.config import CoordinatorSettings
from mitosis.coordinator.app import create_app
from mitosis.coordinator.db.tables import active_tasks, archived_tasks, groups, users
from mitosis.wire.enums import TaskState

USER = "bench"
PASSWORD = "bench-pw"
BATCH = 5000
PAGES = {
    "first_page": "/ui/tasks",
    "filtered_state_creator": "/ui/tasks?state=Finished&creator=bench",
    "filtered_ready_page_3": "/ui/tasks?state=Ready&page=3",
    "filtered_label": "/ui/tasks?labels=sweep-7",
}


def _rows(count: int, archived: bool, start_id: int, user_id: int, group_id: int) -> list[dict[str, Any]]:
    base = datetime(2025, 1, 1, tzinfo=UTC)
    out = []
    for i in range(count):
        n = start_id + i
        row: dict[str, Any] = {
            "id": n,
            "creator_id": user_id,
            "group_id": group_id,
            "task_id": n,
            "uuid": uuid.uuid4(),
            "tags": ["gpu"] if n % 10 == 0 else [],
            "labels": [f"sweep-{n % 20}", f"seed-{n % 7}"],
            "created_at": base + timedelta(seconds=n),
            "updated_at": base + timedelta(seconds=n + 30),
            "state": (TaskState.Finished if archived else TaskState.Ready).code,
            "timeout": 600,
            "priority": n % 5,
            "spec": {
                "args": ["python", "train.py", "--seed", str(n)],
                "envs": {},
                "resources": [],
                "terminal_output": False,
                "watch": None,
            },
            "result": {"exit_status": 0 if n % 2 else 768, "msg": None} if archived else None,
            "upstream_task_uuid": None,
            "downstream_task_uuid": None,
        }
        if archived:
            row["reporter_uuid"] = None
        else:
            row["cancel_requested"] = False
        out.append(row)
    return out


async def _fill(app: Any, total: int) -> float:
    engine = app.state.ctx.engine
    started = time.perf_counter()
    async with engine.begin() as conn:
        user_id, group_id = (
            await conn.execute(
                select(users.c.id, groups.c.id)
                .join(groups, groups.c.creator_id == users.c.id)
                .where(users.c.username == USER, groups.c.group_name == USER)
            )
        ).one()
    archived_count = total * 9 // 10
    next_id = 1
    for table, count, archived in (
        (archived_tasks, archived_count, True),
        (active_tasks, total - archived_count, False),
    ):
        done = 0
        while done < count:
            size = min(BATCH, count - done)
            async with engine.begin() as conn:
                await conn.execute(insert(table), _rows(size, archived, next_id, user_id, group_id))
            next_id += size
            done += size
    async with engine.begin() as conn:
        await conn.execute(update(groups).where(groups.c.id == group_id).values(task_count=total))
        if engine.dialect.name == "postgresql":
            await conn.exec_driver_sql("ANALYZE")
            await conn.exec_driver_sql(
                f"SELECT setval(pg_get_serial_sequence('active_tasks', 'id'), {next_id})"
            )
        else:
            await conn.exec_driver_sql("ANALYZE")
    return time.perf_counter() - started


async def _login(client: httpx.AsyncClient) -> None:
    page = await client.get("/ui/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    r = await client.post(
        "/ui/login",
        data={"username": USER, "password": PASSWORD, "csrf_token": token.group(1), "next": "/ui/tasks"},
    )
    assert r.status_code == 303, r.text


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(p95 * 1000, 2),
        "min_ms": round(ordered[0] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


async def _bench(db_url: str, data_dir: Path, total: int, renders: int) -> dict[str, Any]:
    settings = CoordinatorSettings(
        bind="127.0.0.1:5999",
        db_url=db_url,
        data_dir=data_dir,
        admin_user="bench_admin",
        admin_password="bench-admin",
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        from mitosis.coordinator.services import accounts
        from mitosis.wire import models as m
        from mitosis.wire.codecs import md5_digest_list

        await accounts.admin_create_user(
            app.state.ctx.engine, m.CreateUserReq(username=USER, md5_password=md5_digest_list(PASSWORD))
        )
        fill_s = await _fill(app, total)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            await _login(client)
            results: dict[str, Any] = {"fill_seconds": round(fill_s, 1)}
            for _ in range(3):
                await client.get("/health")
            health = []
            for _ in range(renders):
                t0 = time.perf_counter()
                r = await client.get("/health")
                health.append(time.perf_counter() - t0)
                assert r.status_code == 200
            results["health_baseline"] = {"path": "/health", **_stats(health)}
            for name, path in PAGES.items():
                warm = await client.get(path)
                if warm.status_code != 200:
                    results[name] = {"path": path, "error": f"HTTP {warm.status_code}"}
                    continue
                for _ in range(2):
                    await client.get(path)
                samples = []
                rows = 0
                for _ in range(renders):
                    t0 = time.perf_counter()
                    r = await client.get(path)
                    samples.append(time.perf_counter() - t0)
                    assert r.status_code == 200
                    rows = r.text.count("<tr data-uuid=")
                results[name] = {"path": path, "rows": rows, **_stats(samples)}
                results[name]["ratio_to_health"] = round(
                    results[name]["median_ms"] / max(results["health_baseline"]["median_ms"], 0.001), 1
                )
            return results


async def _pg_admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--renders", type=int, default=25)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument(
        "--pg",
        default=os.environ.get("MITO_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL server for the throwaway database (default: $MITO_BENCH_PG or the local one)",
    )
    args = parser.parse_args()
    out: dict[str, Any] = {
        "tasks": args.tasks,
        "renders": args.renders,
        "target_median_ms": 100,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    for backend in args.backends.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            data_dir = Path(tmp)
            if backend == "sqlite":
                out[backend] = await _bench(
                    f"sqlite:///{data_dir / 'bench.db'}", data_dir, args.tasks, args.renders
                )
                continue
            name = f"mito_ui_bench_{uuid.uuid4().hex[:8]}"
            await _pg_admin(args.pg, f'CREATE DATABASE "{name}"')
            try:
                url = args.pg.rsplit("/", 1)[0] + "/" + name
                out[backend] = await _bench(url, data_dir, args.tasks, args.renders)
            finally:
                await _pg_admin(args.pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
