"""Latency: submit → process start on an idle worker, and submit → archived (Finished, committed).

Tasks go one at a time to one idle, long-polling ``mito worker``. Each runs
``sh -c 'date +%s.%N > FILE'``, so FILE holds the wall time the process started. The same-run
baseline is the spawn → timestamp delay of that command in a bare loop (benchmarks.baseline),
and, on the same coordinator, ``GET /health`` back to back and after 50 ms of idleness: on a
virtual machine a process woken from idle answers later (each of the several hops from submit to
start pays that), which the tasks here meet and a back-to-back loop does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import coordinator, database, login, start_workers, summary_ms, task_req, wait_for


def baseline_start(n: int) -> list[float]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.baseline", "--latency", str(n)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return list(json.loads(out.stdout)["start_latency_s"])


async def _wait_file(path: Path, timeout: float) -> None:
    """Until ``path`` exists and holds a line (bounded by ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if path.read_text().endswith("\n"):
                return
        await asyncio.sleep(0.0005)
    raise TimeoutError(f"{path} was not written within {timeout:.0f} s")


async def mitosis_latency(kind: str, n: int, tmp: Path) -> dict[str, Any]:
    marks = tmp / f"marks-{kind}"
    marks.mkdir(parents=True)
    starts: list[float] = []
    dones: list[float] = []
    async with database(kind, tmp) as db:
        with coordinator(db.url, tmp / f"coord-lat-{kind}") as coord:
            pool = start_workers(coord.url, 1, tmp / f"workers-lat-{kind}")
            try:
                await wait_for(db, "SELECT count(*) FROM workers", 1, 120, poll=0.1)
                async with httpx.AsyncClient(base_url=coord.url, timeout=60) as client:
                    client.headers["Authorization"] = f"Bearer {await login(client)}"
                    await asyncio.sleep(1.0)  # the worker is now parked in its long-poll
                    for i in range(n):
                        mark = marks / str(i)
                        req = task_req(["/bin/sh", "-c", 'date +%s.%N > "$0"', str(mark)])
                        t0 = time.time()
                        r = await client.post("/tasks", json=req)
                        r.raise_for_status()
                        # Watch for the mark with a cheap stat() first: polling the database every
                        # millisecond meanwhile would take CPU from the coordinator, the worker and
                        # PostgreSQL on the critical path (2 cores) and inflate what is measured.
                        await _wait_file(mark, 60)
                        await wait_for(db, "SELECT count(*) FROM archived_tasks", i + 1, 60, poll=0.001)
                        dones.append(time.time() - t0)
                        starts.append(float(mark.read_text()) - t0)
                        await asyncio.sleep(0.05)  # back to idle: the worker re-enters its long-poll
                    health = await _health_round_trips(client, n)
            finally:
                pool.stop()
    return {"submit_to_start": summary_ms(starts), "submit_to_archived": summary_ms(dones), **health}


async def _health_round_trips(client: httpx.AsyncClient, n: int) -> dict[str, Any]:
    """``GET /health`` back to back, and each after the same 50 ms idle gap as the tasks."""
    out: dict[str, Any] = {}
    for name, gap in (("health_back_to_back", 0.0), ("health_after_idle", 0.05)):
        times = []
        for _ in range(n):
            if gap:
                time.sleep(gap)  # a blocking sleep: this process idles as between the tasks
            t0 = time.perf_counter()
            r = await client.get("/health")
            times.append(time.perf_counter() - t0)
            r.raise_for_status()
        out[name] = summary_ms(times)
    return out


async def run(tmp: Path, *, n: int, kinds: list[str]) -> dict[str, Any]:
    base = summary_ms(await asyncio.to_thread(baseline_start, n))
    out: dict[str, Any] = {"n_tasks": n, "baseline_spawn_to_start": base, "runs": []}
    for kind in kinds:
        res = await mitosis_latency(kind, n, tmp)
        res["database"] = kind
        res["p50_overhead_over_baseline_ms"] = round(res["submit_to_start"]["p50_ms"] - base["p50_ms"], 3)
        out["runs"].append(res)
    return out
