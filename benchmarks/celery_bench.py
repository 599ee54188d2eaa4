"""Celery 5 + Redis broker on the same workload: N /bin/true tasks, and one-at-a-time latency.

The script starts a throwaway ``redis-server`` on a free loopback port (no persistence) and a
``celery worker`` (prefork, concurrency = the Mitosis worker count). Throughput: publish the burst,
then wait until every result is stored (result backend = Redis db 1, counted with DBSIZE).
Latency: the task runs ``sh -c 'date +%s.%N > FILE'``; submit → start and submit → result.
Needs the ``bench`` extra: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.common import free_port, log, summary_ms


@contextlib.contextmanager
def redis_server(tmp: Path) -> Iterator[int]:
    port = free_port()
    exe = shutil.which("redis-server") or "/usr/bin/redis-server"
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import redis

        r = redis.Redis(port=port)
        for _ in range(200):
            with contextlib.suppress(redis.ConnectionError):
                if r.ping():
                    break
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextlib.contextmanager
def celery_worker(port: int, concurrency: int, tmp: Path) -> Iterator[dict[str, str]]:
    env = {
        **os.environ,
        "BENCH_CELERY_BROKER": f"redis://127.0.0.1:{port}/0",
        "BENCH_CELERY_BACKEND": f"redis://127.0.0.1:{port}/1",
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
    }
    cmd = [
        str(Path(sys.executable).parent / "celery"),
        "-A",
        "benchmarks.celery_app",
        "worker",
        "-P",
        "prefork",
        "-c",
        str(concurrency),
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-l",
        "warning",
    ]
    with (tmp / f"celery-{concurrency}.log").open("ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        os.environ["BENCH_CELERY_BROKER"] = env["BENCH_CELERY_BROKER"]
        os.environ["BENCH_CELERY_BACKEND"] = env["BENCH_CELERY_BACKEND"]
        yield env
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _throughput(port: int, n: int, concurrency: int, tmp: Path, timeout: float) -> dict[str, Any]:
    import redis

    with celery_worker(port, concurrency, tmp):
        from celery import Celery

        app = Celery("client", broker=f"redis://127.0.0.1:{port}/0", backend=f"redis://127.0.0.1:{port}/1")
        backend = redis.Redis(port=port, db=1)
        backend.flushdb()
        # Warm up: the pool is up and consuming once one task has a result.
        app.send_task("bench.run", args=[["/bin/true"]]).get(timeout=120)
        backend.flushdb()
        t0 = time.monotonic()
        for _ in range(n):
            app.send_task("bench.run", args=[["/bin/true"]])
        t_sub = time.monotonic()
        deadline = t0 + timeout
        while backend.dbsize() < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"celery: {backend.dbsize()} of {n} done after {timeout} s")
            time.sleep(0.02)
        wall = time.monotonic() - t0
    return {"tasks_per_s": round(n / wall, 1), "wall_s": round(wall, 3), "submit_s": round(t_sub - t0, 3)}


def _latency(port: int, n: int, tmp: Path) -> dict[str, Any]:
    marks = tmp / "celery-marks"
    marks.mkdir(exist_ok=True)
    starts, dones = [], []
    with celery_worker(port, 1, tmp):
        from celery import Celery

        app = Celery("client", broker=f"redis://127.0.0.1:{port}/0", backend=f"redis://127.0.0.1:{port}/1")
        app.send_task("bench.run", args=[["/bin/true"]]).get(timeout=120)
        for i in range(n):
            mark = marks / str(i)
            t0 = time.time()
            res = app.send_task("bench.run", args=[["/bin/sh", "-c", 'date +%s.%N > "$0"', str(mark)]])
            res.get(timeout=60, interval=0.001)
            dones.append(time.time() - t0)
            starts.append(float(mark.read_text()) - t0)
            time.sleep(0.05)
    return {"submit_to_start": summary_ms(starts), "submit_to_result": summary_ms(dones)}


async def run(
    tmp: Path, *, n: int, worker_counts: list[int], latency_n: int, timeout: float = 600
) -> dict[str, Any]:
    def body() -> dict[str, Any]:
        out: dict[str, Any] = {"n_tasks": n, "runs": []}
        with redis_server(tmp) as port:
            for c in worker_counts:
                res = _throughput(port, n, c, tmp, timeout)
                res["concurrency"] = c
                log(f"celery concurrency={c}: {res['tasks_per_s']}/s")
                out["runs"].append(res)
            if latency_n:
                out["latency"] = _latency(port, latency_n, tmp)
        return out

    return await asyncio.to_thread(body)
