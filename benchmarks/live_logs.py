"""Worker CPU cost of live logs: a task printing 50 MB to stdout, three ways, in one invocation.

Reproduce (prints one JSON document on stdout; progress on stderr)::

    .venv/bin/python -m benchmarks.live_logs                 # 3 runs per mode, SQLite coordinator
    .venv/bin/python -m benchmarks.live_logs --reps 5 --mb 100

Modes, each with its own fresh `mito worker` process against one `mito coordinator` process:

* ``discard``: ``terminal_output`` off, the output goes to /dev/null (the baseline);
* ``terminal``: ``terminal_output`` on, live logs off (``MITO_LIVE_LOGS=false``): captured to files,
  packed and uploaded as the std-log artifact;
* ``live``: ``terminal_output`` on with live logs (the default): also streamed to the coordinator
  while the task runs.

Per task: the worker process's user + system CPU seconds (its own, not the task's: the task is a
child process) from fetching the task to its commit; the median over ``--reps`` tasks per mode.
``ratio_live_vs_discard`` and ``ratio_live_vs_terminal`` divide the live median by the others.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    MITO,
    coordinator,
    database,
    log,
    login,
    machine_info,
    proc_cpu,
    task_req,
    tmpdir,
)

MODES = {
    "discard": (False, "true"),
    "terminal": (True, "false"),
    "live": (True, "true"),
}


def start_worker(url: str, home: Path, live_logs: str) -> subprocess.Popen[bytes]:
    home.mkdir(parents=True)
    cmd = [MITO, "worker", "-c", url, "-u", ADMIN_USER, "-p", ADMIN_PASSWORD]
    cmd += ["--credential-path", str(home / "credentials"), "--work-dir", str(home / "work")]
    cmd += ["--polling-interval", "1s", "--heartbeat-interval", "30s", "--long-poll", "5s", "--skip-redis"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MITO_")}
    env.update(NO_COLOR="1", MITO_LIVE_LOGS=live_logs)
    out = (home / "worker.log").open("ab")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 60
    while "registered" not in (home / "worker.log").read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker did not register; see {home / 'worker.log'}")
        time.sleep(0.05)
    return proc


async def run_task(client: httpx.AsyncClient, mb: int, terminal: bool) -> float:
    script = f"yes 'a line of task output, as a build or a training loop would print it' | head -c {mb}000000"
    req = task_req(["sh", "-c", script], timeout="10m")
    req["task_spec"]["terminal_output"] = terminal
    r = await client.post("/tasks", json=req)
    r.raise_for_status()
    uuid = r.json()["uuid"]
    started = time.monotonic()
    while time.monotonic() - started < 600:
        info = (await client.get(f"/tasks/{uuid}")).json()["info"]
        if info["state"] in ("Finished", "Cancelled") and info["result"] is not None:
            if info["result"]["exit_status"] != 0:
                raise RuntimeError(f"task failed: {info['result']}")
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise TimeoutError(f"task {uuid} did not end in 600 s")


async def bench(reps: int, mb: int) -> dict[str, Any]:
    out: dict[str, Any] = {"benchmark": "live_logs", "mb": mb, "reps": reps}
    with tmpdir("mito-bench-livelogs-") as tmp:
        async with database("sqlite", tmp) as db:
            with coordinator(db.url, tmp / "coord") as coord:
                modes: dict[str, Any] = {}
                for mode, (terminal, live_logs) in MODES.items():
                    proc = start_worker(coord.url, tmp / f"worker-{mode}", live_logs)
                    try:
                        async with httpx.AsyncClient(base_url=coord.url, timeout=30) as client:
                            client.headers["Authorization"] = f"Bearer {await login(client)}"
                            await run_task(client, 1, terminal)  # warm-up
                            cpu, wall = [], []
                            for _ in range(reps):
                                before = proc_cpu(proc.pid)
                                wall.append(await run_task(client, mb, terminal))
                                cpu.append(proc_cpu(proc.pid) - before)
                            log(f"{mode}: cpu {cpu}, wall {[round(w, 2) for w in wall]}")
                    finally:
                        proc.terminate()
                        proc.wait(timeout=30)
                    modes[mode] = {
                        "worker_cpu_s_median": round(statistics.median(cpu), 3),
                        "worker_cpu_s": [round(c, 3) for c in cpu],
                        "task_wall_s_median": round(statistics.median(wall), 3),
                    }
                out["modes"] = modes
    live = out["modes"]["live"]["worker_cpu_s_median"]
    out["ratio_live_vs_discard"] = round(live / max(out["modes"]["discard"]["worker_cpu_s_median"], 0.01), 2)
    out["ratio_live_vs_terminal"] = round(
        live / max(out["modes"]["terminal"]["worker_cpu_s_median"], 0.01), 2
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--mb", type=int, default=50)
    args = parser.parse_args()
    machine = machine_info()  # before the event loop: it runs one of its own
    print(json.dumps({**asyncio.run(bench(args.reps, args.mb)), "machine": machine}, indent=2))


if __name__ == "__main__":
    main()
