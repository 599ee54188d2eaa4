"""Scale-out: 1, 2 and 3 coordinators sharing one PostgreSQL behind nginx (scripts/nginx-lb.sh).

Throughput: N /bin/true tasks, 4 workers and the client all talking to the load balancer. Then the
failover run: 3 coordinators, the client submits in chunks while workers run, one coordinator gets
SIGKILL when about a third of the tasks are done; every task must be archived exactly once, and each
task appends its uuid to a shared file so a task run twice would show up there.
Baseline in the same run: the 1-coordinator figure without nginx.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import (
    ROOT,
    Coordinator,
    database,
    free_port,
    log,
    login,
    start_coordinator,
    start_workers,
    submit_batch,
    task_req,
    wait_for,
)


@contextlib.contextmanager
def nginx(ports: list[int], tmp: Path) -> Iterator[str]:
    listen = free_port()
    with (tmp / f"nginx-{listen}.log").open("ab") as out:
        proc = subprocess.Popen(
            ["bash", str(ROOT / "scripts" / "nginx-lb.sh"), str(listen), *map(str, ports)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{listen}"
    log_path = tmp / f"nginx-{listen}.log"
    try:
        for _ in range(200):
            if proc.poll() is not None:
                raise RuntimeError(f"nginx did not start: {log_path.read_text().strip()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.05)
        else:
            raise TimeoutError(f"nginx on {url} not healthy after 10 s: {log_path.read_text().strip()}")
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _coordinators(db_url: str, data_dir: Path, k: int) -> list[Coordinator]:
    # One data dir: the replicas must share the token signing key (the first one creates it).
    return [start_coordinator(db_url, data_dir) for _ in range(k)]


async def _throughput(kind_k: int, n: int, workers: int, tmp: Path, via_lb: bool) -> dict[str, Any]:
    async with database("postgresql", tmp) as db:
        coords = _coordinators(db.url, tmp / f"coord-scale-{kind_k}-{via_lb}", kind_k)
        try:
            ports = [int(c.url.rsplit(":", 1)[1]) for c in coords]
            with contextlib.ExitStack() as stack:
                url = stack.enter_context(nginx(ports, tmp)) if via_lb else coords[0].url
                pool = start_workers(url, workers, tmp / f"w-scale-{kind_k}-{via_lb}")
                try:
                    await wait_for(db, "SELECT count(*) FROM workers", workers, 120, poll=0.1)
                    async with httpx.AsyncClient(base_url=url, timeout=120) as c:
                        c.headers["Authorization"] = f"Bearer {await login(c)}"
                        t0 = time.monotonic()
                        await submit_batch(c, [task_req(["/bin/true"]) for _ in range(n)], chunk=1000)
                        t1 = await wait_for(db, "SELECT count(*) FROM archived_tasks", n, 900, poll=0.05)
                finally:
                    pool.stop()
                cpu = [c.proc.pid for c in coords]
        finally:
            for co in coords:
                co.stop()
    return {"coordinators": kind_k, "via_nginx": via_lb, "tasks_per_s": round(n / (t1 - t0), 1), "pids": cpu}


async def _failover(n: int, workers: int, tmp: Path) -> dict[str, Any]:
    runs = tmp / "runs.log"
    runs.touch()
    async with database("postgresql", tmp) as db:
        coords = _coordinators(db.url, tmp / "coord-failover", 3)
        try:
            ports = [int(c.url.rsplit(":", 1)[1]) for c in coords]
            with nginx(ports, tmp) as url:
                pool = start_workers(url, workers, tmp / "w-failover")
                killed_at = None
                submit_errors = 0
                try:
                    await wait_for(db, "SELECT count(*) FROM workers", workers, 120, poll=0.1)
                    async with httpx.AsyncClient(base_url=url, timeout=60) as c:
                        c.headers["Authorization"] = f"Bearer {await login(c)}"
                        req = task_req(["/bin/sh", "-c", 'echo "$MITO_TASK_UUID" >> "$0"', str(runs)])
                        chunk = max(50, n // 20)
                        submitted = 0
                        t0 = time.monotonic()
                        while submitted < n:
                            try:
                                await submit_batch(c, [req] * min(chunk, n - submitted), chunk=chunk)
                                submitted += min(chunk, n - submitted)
                            except (httpx.HTTPError, RuntimeError):
                                submit_errors += 1  # the LB may hand a request to the dying one
                                if submit_errors > 50:
                                    raise
                                await asyncio.sleep(0.2)
                                continue
                            done = int(await db.scalar("SELECT count(*) FROM archived_tasks"))
                            if killed_at is None and done >= n // 3:
                                coords[1].kill()
                                killed_at = done
                                log(f"failover: SIGKILLed coordinator {coords[1].url} at {done} archived")
                            await asyncio.sleep(0.05)
                        if killed_at is None:
                            await wait_for(db, "SELECT count(*) FROM archived_tasks", n // 3, 600, poll=0.05)
                            coords[1].kill()
                            killed_at = int(await db.scalar("SELECT count(*) FROM archived_tasks"))
                        try:
                            t1 = await wait_for(
                                db, "SELECT count(*) FROM archived_tasks", submitted, 300, poll=0.1
                            )
                        except TimeoutError:
                            t1 = time.monotonic()
                finally:
                    pool.stop()
            archived = int(await db.scalar("SELECT count(*) FROM archived_tasks"))
            finished_ok = int(
                await db.scalar(
                    "SELECT count(*) FROM archived_tasks WHERE state = 3 AND (result->>'exit_status')::int = 0"
                )
            )
            stuck = await db.rows("SELECT uuid, state FROM active_tasks")
        finally:
            for co in coords:
                co.stop()
    lines = [x for x in runs.read_text().split() if x]
    counts = collections.Counter(lines)
    return {
        "submitted": submitted,
        "killed_after_archived": killed_at,
        "archived": archived,
        "archived_finished_exit0": finished_ok,
        "left_in_active": len(stuck),
        "left_in_active_states": sorted({s for _, s in stuck}),
        "runs_recorded": len(lines),
        "tasks_run_twice": sum(1 for v in counts.values() if v > 1),
        "client_submit_retries": submit_errors,
        "tasks_per_s": round(archived / (t1 - t0), 1),
        "no_task_lost_or_run_twice": archived == submitted
        and not stuck
        and all(v == 1 for v in counts.values())
        and len(counts) == submitted,
    }


async def run(tmp: Path, *, n: int, workers: int) -> dict[str, Any]:
    out: dict[str, Any] = {"n_tasks": n, "workers": workers, "throughput": []}
    base = await _throughput(1, n, workers, tmp, via_lb=False)
    log(f"scaleout baseline (1 coordinator, direct): {base['tasks_per_s']}/s")
    out["baseline_direct_1_coordinator"] = base
    for k in (1, 2, 3):
        res = await _throughput(k, n, workers, tmp, via_lb=True)
        res["ratio_to_direct"] = round(res["tasks_per_s"] / base["tasks_per_s"], 3)
        log(f"scaleout {k} coordinators via nginx: {res['tasks_per_s']}/s")
        out["throughput"].append(res)
    out["failover"] = await _failover(n, workers, tmp)
    return out
