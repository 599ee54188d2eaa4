"""Where the submit → process start latency goes, hop by hop (a profiling aid for issue 9).

    python -m benchmarks.latency_split [--n 100] [--db postgresql|sqlite]

One coordinator and one ``mito worker`` (started through a wrapper that records, in a marks file,
the wall time each task's claim reached the worker and the times around its ``posix_spawn``);
tasks go one at a time to the idle, long-polling worker as in ``benchmarks.latency`` and write
``date +%s.%N`` when they start. Printed (JSON): p50/p90 of

* ``post_rtt``: the client's ``POST /tasks`` round trip;
* ``submit_to_claim``: from sending ``POST /tasks`` to the worker holding the task;
* ``claim_to_spawn``: the worker's own work before ``posix_spawn`` (task directory, environment);
* ``spawn``: ``TaskProcess.spawn`` itself;
* ``spawn_to_start``: ``sh`` and ``date`` starting (compare the bare loop in ``benchmarks.latency``);
* ``total``: submit → process start.

Loopback only; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import ADMIN_PASSWORD, ADMIN_USER, coordinator, database, login, task_req, wait_for

_WRAPPER = """
import sys, time
marks = open(sys.argv.pop(1), "a", buffering=1)
from mitosis.worker import executor, feeder
apply = feeder.Feeder._apply
async def _apply(self, request, resp):
    if resp is not None and resp.tasks:
        marks.write(f"claim {time.time():.6f} {resp.tasks[0].uuid}\\n")
    return await apply(self, request, resp)
feeder.Feeder._apply = _apply
spawn = executor.TaskProcess.spawn.__func__
async def _spawn(cls, *a, **k):
    marks.write(f"prespawn {time.time():.6f}\\n")
    proc = await spawn(cls, *a, **k)
    marks.write(f"spawned {time.time():.6f}\\n")
    return proc
executor.TaskProcess.spawn = classmethod(_spawn)
from mitosis.cli.main import main
sys.argv = ["mito", *sys.argv[1:]]
main()
"""


async def _wait_file(path: Path, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = path.read_text()
        except OSError:
            text = ""
        if text.endswith("\n"):
            return float(text)
        await asyncio.sleep(0.0005)
    raise TimeoutError(f"{path} was not written within {timeout:.0f} s")


def _stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p90_ms": round(ordered[int(len(ordered) * 0.9)] * 1000, 2),
    }


async def run(kind: str, n: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="mito-latsplit-"))
    marks_path = tmp / "marks.txt"
    wrapper = tmp / "wrapper.py"
    wrapper.write_text(_WRAPPER)
    rows: list[tuple[str, float, float, float]] = []
    async with database(kind, tmp) as db:
        with coordinator(db.url, tmp / "coord") as coord:
            wdir = tmp / "worker"
            wdir.mkdir()
            cmd = [
                sys.executable, str(wrapper), str(marks_path), "worker", "-c", coord.url, "-u", ADMIN_USER,
                "-p", ADMIN_PASSWORD, "--credential-path", str(wdir / "credentials"), "--work-dir",
                str(wdir / "work"), "--polling-interval", "1s", "--heartbeat-interval", "30s", "--skip-redis",
            ]  # fmt: skip
            with (wdir / "worker.log").open("wb") as out:
                worker = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
            try:
                await wait_for(db, "SELECT count(*) FROM workers", 1, 60, poll=0.1)
                async with httpx.AsyncClient(base_url=coord.url, timeout=60, trust_env=False) as client:
                    client.headers["Authorization"] = f"Bearer {await login(client)}"
                    await asyncio.sleep(1.0)  # the worker is parked in its long-poll
                    for i in range(n):
                        mark = tmp / f"start-{i}"
                        req = task_req(["/bin/sh", "-c", 'date +%s.%N > "$0"', str(mark)])
                        t0 = time.time()
                        r = await client.post("/tasks", json=req)
                        t1 = time.time()
                        r.raise_for_status()
                        started = await _wait_file(mark, 60)
                        rows.append((str(r.json()["uuid"]), t0, t1, started))
                        await wait_for(db, "SELECT count(*) FROM archived_tasks", i + 1, 60, poll=0.002)
                        await asyncio.sleep(0.05)  # back to idle
            finally:
                worker.terminate()
                worker.wait(timeout=30)
    claims: dict[str, list[float]] = {}
    current: list[float] | None = None
    for line in marks_path.read_text().splitlines():
        kind_, at, *rest = line.split()
        if kind_ == "claim":
            current = claims.setdefault(rest[0], [])
            current.append(float(at))
        elif current is not None:
            current.append(float(at))
    cols: dict[str, list[float]] = {
        k: [] for k in ("post_rtt", "submit_to_claim", "claim_to_spawn", "spawn", "spawn_to_start", "total")
    }
    for uuid, t0, t1, started in rows:
        got = claims.get(uuid)
        if got is None or len(got) < 3:
            continue
        claim, pre, post = got[:3]
        cols["post_rtt"].append(t1 - t0)
        cols["submit_to_claim"].append(claim - t0)
        cols["claim_to_spawn"].append(pre - claim)
        cols["spawn"].append(post - pre)
        cols["spawn_to_start"].append(started - post)
        cols["total"].append(started - t0)
    return {"database": kind, **{k: _stats(v) for k, v in cols.items() if v}}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--db", default="postgresql", choices=["postgresql", "sqlite"])
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.db, args.n)), indent=2))


if __name__ == "__main__":
    main()
