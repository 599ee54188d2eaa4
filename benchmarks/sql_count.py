"""SQL statements (and transactions) per task lifecycle, counted with a ``before_cursor_execute`` hook
and the observer of the plain asyncpg path (``mitosis.coordinator.db.raw``).

An in-process coordinator (uvicorn on a thread) serves one submit → fetch → Finish → Commit cycle
driven over HTTP the way a 0.6.8 worker drives it, then the batched protocol our worker uses: one
batch that claims 8 tasks and one that commits them; every statement the coordinator sends is
counted per request. Run alone: ``python -m benchmarks.sql_count``.
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import event

from benchmarks.common import ADMIN_PASSWORD, ADMIN_USER, database, free_port, md5_list, task_req, tmpdir
from mitosis.coordinator.db import raw


def _serve(db_url: str, data_dir: Path) -> tuple[uvicorn.Server, threading.Thread, str, Any]:
    from mitosis.config import CoordinatorSettings
    from mitosis.coordinator.app import create_app

    port = free_port()
    settings = CoordinatorSettings(
        bind=f"127.0.0.1:{port}",
        db_url=db_url,
        data_dir=data_dir,
        admin_user=ADMIN_USER,
        admin_password=ADMIN_PASSWORD,
    )
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        threading.Event().wait(0.05)
    return server, thread, url, app


def count_lifecycle(db_url: str, data_dir: Path, show: bool = False) -> dict[str, Any]:
    server, thread, url, app = _serve(db_url, data_dir)
    counts: collections.Counter[str] = collections.Counter()
    texts: dict[str, list[str]] = collections.defaultdict(list)
    current = ["setup"]

    def on_exec(_conn: Any, _cur: Any, statement: str, *_a: Any) -> None:
        counts[current[0]] += 1
        texts[current[0]].append(" ".join(statement.split())[:160])

    txns: collections.Counter[str] = collections.Counter()

    def on_begin(conn: Any) -> None:
        if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
            txns[current[0]] += 1

    engine = app.state.ctx.engine
    event.listen(engine.sync_engine, "before_cursor_execute", on_exec)
    event.listen(engine.sync_engine, "begin", on_begin)

    def on_raw(statement: str, _args: tuple[Any, ...]) -> None:
        on_exec(None, None, statement)

    raw.observers.append(on_raw)
    try:
        with httpx.Client(base_url=url, timeout=30) as c:
            r = c.post("/login", json={"username": ADMIN_USER, "md5_password": md5_list(ADMIN_PASSWORD)})
            user = {"Authorization": f"Bearer {r.json()['token']}"}
            r = c.post("/workers", json={"tags": [], "labels": [], "groups": []}, headers=user)
            worker = {"Authorization": f"Bearer {r.json()['token']}"}
            steps: list[tuple[str, Any]] = [
                (
                    "submit (POST /tasks)",
                    lambda: c.post("/tasks", json=task_req(["/bin/true"]), headers=user),
                ),
                ("fetch (GET /workers/tasks)", lambda: c.get("/workers/tasks", headers=worker)),
                ("finish (POST /workers/tasks Finish)", None),
                ("commit (POST /workers/tasks Commit)", None),
                ("heartbeat (POST /workers/heartbeat)", lambda: c.post("/workers/heartbeat", headers=worker)),
                ("idle fetch (GET /workers/tasks, none)", lambda: c.get("/workers/tasks", headers=worker)),
                (
                    "submit 8 (POST /tasks/submit)",
                    lambda: c.post(
                        "/tasks/submit", json={"tasks": [task_req(["/bin/true"])] * 8}, headers=user
                    ),
                ),
                ("batch claim 8 (POST /workers/batch)", None),
                ("batch commit 8 (POST /workers/batch)", None),
            ]
            claimed: list[int] = []
            task_id = None
            for name, call in steps:
                current[0] = name
                if name.startswith("batch claim"):
                    r = c.post("/workers/batch", json={"fetch": 8, "holding": []}, headers=worker)
                    claimed = [t["id"] for t in r.json()["tasks"]]
                    assert len(claimed) == 8, r.text
                elif name.startswith("batch commit"):
                    done = [
                        {"id": i, "op": "Finish", "result": {"exit_status": 0, "msg": None}} for i in claimed
                    ]
                    r = c.post("/workers/batch", json={"done": done, "holding": []}, headers=worker)
                    assert r.json()["refused"] == [], r.text
                elif name.startswith("finish"):
                    r = c.post("/workers/tasks", json={"id": task_id, "op": "Finish"}, headers=worker)
                elif name.startswith("commit"):
                    r = c.post(
                        "/workers/tasks",
                        json={"id": task_id, "op": {"Commit": {"exit_status": 0, "msg": None}}},
                        headers=worker,
                    )
                else:
                    r = call()
                assert r.status_code == 200, (name, r.status_code, r.text)
                if name.startswith("fetch"):
                    task_id = r.json()["id"]
    finally:
        raw.observers.remove(on_raw)
        event.remove(engine.sync_engine, "before_cursor_execute", on_exec)
        event.remove(engine.sync_engine, "begin", on_begin)
        server.should_exit = True
        thread.join(timeout=30)
    per_step = {k: v for k, v in counts.items() if k != "setup"}
    life = ("submit (POST /tasks)", "fetch", "finish", "commit")
    lifecycle = sum(v for k, v in per_step.items() if k.startswith(life))
    per_txn = {k: v for k, v in txns.items() if k != "setup"}
    begins = sum(v for k, v in per_txn.items() if k.startswith(life))
    batched = (
        "submit 8 (POST /tasks/submit)",
        "batch claim 8 (POST /workers/batch)",
        "batch commit 8 (POST /workers/batch)",
    )
    batch_statements = sum(per_step.get(k, 0) for k in batched)
    batch_txns = sum(per_txn.get(k, 0) for k in batched)
    out: dict[str, Any] = {
        # The batched protocol, per task: 8 tasks submitted, claimed and committed in 3 requests.
        "batched_statements_per_task": round(batch_statements / 8, 2),
        "batched_round_trips_per_task": round(
            (batch_statements + (2 * batch_txns if "postgresql" in db_url else batch_txns)) / 8, 2
        ),
        "statements_per_request": per_step,
        "transactions_per_request": per_txn,
        "task_lifecycle_statements": lifecycle,
        "task_lifecycle_transactions": begins,
        # BEGIN and COMMIT are round trips too (PostgreSQL; on SQLite BEGIN IMMEDIATE is a statement).
        "task_lifecycle_round_trips": lifecycle + (2 * begins if "postgresql" in db_url else begins),
    }
    if show:
        out["statements"] = {k: v for k, v in texts.items() if k != "setup"}
    return out


async def run(tmp: Path, kinds: list[str], show: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in kinds:
        async with database(kind, tmp) as db:
            out[kind] = await asyncio.to_thread(count_lifecycle, db.url, tmp / f"sqlcount-{kind}", show)
    return out


if __name__ == "__main__":
    with tmpdir("mito-sqlcount-") as t:
        print(json.dumps(asyncio.run(run(t, ["postgresql", "sqlite"], "--show" in sys.argv)), indent=2))
