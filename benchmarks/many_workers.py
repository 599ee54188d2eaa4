"""Many workers: coordinator CPU per 1,000 heartbeats/s and per 1,000 idle long-polls, memory per poll.

A real coordinator process on PostgreSQL. K workers are registered over HTTP; then heartbeats are sent
at a fixed offered rate for a fixed time, and the coordinator's CPU time (from /proc) is divided by
the achieved rate. Then one idle ``GET /workers/tasks?wait=60s`` per worker is held open (one
connection each) and the coordinator's CPU and RSS are compared with the same process idle.
Baseline: the coordinator process idle with no requests, over the same interval.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import coordinator, database, login, proc_cpu, proc_rss


async def _register(url: str, n: int) -> list[str]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as c:
        c.headers["Authorization"] = f"Bearer {await login(c)}"
        tokens = []
        for _ in range(n):
            r = await c.post("/workers", json={"tags": [], "labels": [], "groups": []})
            r.raise_for_status()
            tokens.append(r.json()["token"])
        return tokens


async def _heartbeats(url: str, tokens: list[str], rate: float, seconds: float, pid: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as c:
        sem = asyncio.Semaphore(64)
        done = 0

        async def beat(tok: str) -> None:
            nonlocal done
            async with sem:
                r = await c.post("/workers/heartbeat", headers={"Authorization": f"Bearer {tok}"})
                if r.status_code == 200:
                    done += 1

        cpu0, t0 = proc_cpu(pid), time.monotonic()
        pending: set[asyncio.Task[None]] = set()
        i = 0
        while time.monotonic() - t0 < seconds:
            due = int((time.monotonic() - t0) * rate)
            while i < due and len(pending) < 256:
                task = asyncio.create_task(beat(tokens[i % len(tokens)]))
                pending.add(task)
                task.add_done_callback(pending.discard)
                i += 1
            await asyncio.sleep(0.002)
        if pending:
            await asyncio.wait(pending, timeout=30)
        wall = time.monotonic() - t0
        cpu = proc_cpu(pid) - cpu0
    achieved = done / wall
    return {
        "offered_per_s": rate,
        "achieved_per_s": round(achieved, 1),
        "coordinator_cpu_s_per_s": round(cpu / wall, 3),
        "cpu_cores_per_1000_hb_per_s": round(cpu / wall / achieved * 1000, 3) if achieved else None,
    }


async def _long_polls(url: str, tokens: list[str], seconds: float, pid: int) -> dict[str, Any]:
    await asyncio.sleep(1.0)
    cpu0, rss0 = proc_cpu(pid), proc_rss(pid)
    await asyncio.sleep(seconds)
    idle_cpu = (proc_cpu(pid) - cpu0) / seconds
    limits = httpx.Limits(max_connections=len(tokens) + 10, max_keepalive_connections=len(tokens) + 10)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as c:
        polls = [
            asyncio.create_task(c.get("/workers/tasks?wait=60s", headers={"Authorization": f"Bearer {t}"}))
            for t in tokens
        ]
        await asyncio.sleep(5.0)  # all requests reach the coordinator and park
        cpu1, rss1 = proc_cpu(pid), proc_rss(pid)
        await asyncio.sleep(seconds)
        held_cpu = (proc_cpu(pid) - cpu1) / seconds
        open_now = sum(1 for p in polls if not p.done())
        for p in polls:
            p.cancel()
        await asyncio.gather(*polls, return_exceptions=True)
    n = len(tokens)
    return {
        "held": open_now,
        "baseline_idle_cpu_cores": round(idle_cpu, 4),
        "held_cpu_cores": round(held_cpu, 4),
        "cpu_cores_per_1000_idle_polls": round((held_cpu - idle_cpu) / max(open_now, 1) * 1000, 4),
        "rss_before_mib": round(rss0 / 2**20, 1),
        "rss_held_mib": round(rss1 / 2**20, 1),
        "memory_kib_per_idle_poll": round((rss1 - rss0) / max(n, 1) / 1024, 1),
    }


async def run(tmp: Path, *, n_workers: int, n_polls: int, seconds: float = 10.0) -> dict[str, Any]:
    async with database("postgresql", tmp) as db:
        with coordinator(db.url, tmp / "coord-many", env={"MITO_MAX_LONG_POLL": "120s"}) as coord:
            pid = coord.proc.pid
            tokens = await _register(coord.url, max(n_workers, n_polls))
            hb = [
                await _heartbeats(coord.url, tokens[:n_workers], rate, seconds, pid)
                for rate in (250, 500, 1000)
            ]
            polls = await _long_polls(coord.url, tokens[:n_polls], seconds, pid)
    return {"workers": n_workers, "heartbeats": hb, "idle_long_polls": polls}
