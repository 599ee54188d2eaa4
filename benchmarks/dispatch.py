"""Dispatch throughput: N ``/bin/true`` tasks through a real coordinator and real ``mito worker``s.

Per (database, workers): start a coordinator process and the workers, wait until all are registered,
then submit the burst through ``POST /tasks/submit`` in the SDK's chunks (workers start on the first
chunk while the rest is sent) and time until the last task is archived (Finished and committed).
The same-run baseline is :mod:`benchmarks.baseline` with the same concurrency. Every task must be
archived and committed exactly once, and claimed once (apart from claims given back unstarted).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import (
    coordinator,
    database,
    log,
    login,
    proc_cpu,
    start_workers,
    submit_batch,
    task_req,
    wait_for,
)
from mitosis.client.sweep import DEFAULT_CHUNK


def baseline(n: int, concurrency: int) -> float:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.baseline", "--n", str(n), "--concurrency", str(concurrency)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return float(json.loads(out.stdout)["tasks_per_s"])


async def verify_exactly_once(db: Any, n: int) -> dict[str, Any]:
    """Every task archived once, committed once, and claimed once apart from claims a worker gave
    back unstarted (a Ready event marked ``requeued`` follows each of those)."""
    archived = int(await db.scalar("SELECT count(DISTINCT uuid) FROM archived_tasks"))
    active = int(await db.scalar("SELECT count(*) FROM active_tasks"))
    flag = "(data->>'{0}') = 'true'" if db.kind == "postgresql" else "json_extract(data, '$.{0}') = 1"
    claims = dict(
        await db.rows(
            "SELECT task_uuid, count(*) FROM events WHERE kind = 'task' AND state = 'Running' GROUP BY task_uuid"
        )
    )
    given_back = dict(
        await db.rows(
            "SELECT task_uuid, count(*) FROM events WHERE kind = 'task' AND state = 'Ready' AND "
            + flag.format("requeued")
            + " GROUP BY task_uuid"
        )
    )
    commits = dict(
        await db.rows(
            "SELECT task_uuid, count(*) FROM events WHERE kind = 'task' AND "
            + flag.format("committed")
            + " GROUP BY task_uuid"
        )
    )
    twice = sum(1 for u, c in claims.items() if c - given_back.get(u, 0) > 1)
    return {
        "archived": archived,
        "active_left": active,
        "claimed_twice": twice,
        "committed_twice": sum(1 for c in commits.values() if c > 1),
        "given_back": sum(given_back.values()),
        "ok": archived == n and len(commits) == n and not twice and all(c == 1 for c in commits.values()),
    }


async def mitosis_run(kind: str, n: int, workers: int, tmp: Path, timeout: float) -> dict[str, Any]:
    async with database(kind, tmp) as db:
        with coordinator(db.url, tmp / f"coord-{kind}-{workers}") as coord:
            pool = start_workers(coord.url, workers, tmp / f"workers-{kind}-{workers}")
            try:
                await wait_for(db, "SELECT count(*) FROM workers", workers, 120, poll=0.1)
                async with httpx.AsyncClient(base_url=coord.url, timeout=120) as client:
                    client.headers["Authorization"] = f"Bearer {await login(client)}"
                    reqs = [task_req(["/bin/true"]) for _ in range(n)]
                    cpu0 = proc_cpu(coord.proc.pid)
                    wcpu0 = sum(proc_cpu(p.pid) for p in pool.procs)
                    t0 = time.monotonic()
                    # Submitted as the SDK and the CLI submit a sweep: in chunks of DEFAULT_CHUNK.
                    await submit_batch(client, reqs, chunk=DEFAULT_CHUNK)
                    t_sub = time.monotonic()
                    t1 = await wait_for(db, "SELECT count(*) FROM archived_tasks", n, timeout, poll=0.05)
                    coord_cpu = proc_cpu(coord.proc.pid) - cpu0
                    worker_cpu = sum(proc_cpu(p.pid) for p in pool.procs) - wcpu0
                check = await verify_exactly_once(db, n)
            finally:
                pool.stop()
    wall = t1 - t0
    return {
        "tasks_per_s": round(n / wall, 1),
        "wall_s": round(wall, 3),
        "submit_s": round(t_sub - t0, 3),
        "coordinator_cpu_ms_per_task": round(coord_cpu / n * 1000, 2),
        "worker_cpu_ms_per_task": round(worker_cpu / n * 1000, 2),
        "load_average": os.getloadavg(),
        "exactly_once": check,
    }


async def run(
    tmp: Path, *, n: int, worker_counts: list[int], kinds: list[str], reps: int = 1, timeout: float = 600
) -> dict[str, Any]:
    """Per (database, workers): ``reps`` rounds, each a Mitosis run between two runs of the bare
    loop; a round's ratio is against the mean of the loop before and after it (the machine's speed
    drifts by a third within minutes here). The reported figures are the round with the median ratio;
    every round is listed under ``rounds``."""
    out: dict[str, Any] = {"n_tasks": n, "reps": reps, "runs": []}
    for kind in kinds:
        for c in worker_counts:
            before = baseline(n, c)
            rounds = []
            for _ in range(reps):
                res = await mitosis_run(kind, n, c, tmp, timeout)
                after = baseline(n, c)
                base = (before + after) / 2
                res.update(
                    baseline_before=round(before, 1),
                    baseline_after=round(after, 1),
                    baseline_tasks_per_s=round(base, 1),
                    ratio=round(res["tasks_per_s"] / base, 3),
                )
                log(
                    f"dispatch {kind} workers={c}: {res['tasks_per_s']}/s, loop {base:.0f}/s, ratio {res['ratio']}"
                )
                rounds.append(res)
                before = after
            median = sorted(rounds, key=lambda r: r["ratio"])[len(rounds) // 2]
            summary = dict(median)
            # Exactly-once must hold in every round, not only in the one reported.
            summary.update(
                database=kind,
                workers=c,
                exactly_once_every_round=all(r["exactly_once"]["ok"] for r in rounds),
            )
            if reps > 1:
                summary["rounds"] = [
                    {
                        "exactly_once": r["exactly_once"]["ok"],
                        **{
                            k: r[k]
                            for k in (
                                "ratio",
                                "tasks_per_s",
                                "baseline_tasks_per_s",
                                "worker_cpu_ms_per_task",
                                "coordinator_cpu_ms_per_task",
                            )
                        },
                    }
                    for r in rounds
                ]
            out["runs"].append(summary)
    return out
