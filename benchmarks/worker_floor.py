"""The floor of the worker's per-task work: its own spawn, wait and task tree, without a coordinator.

    python -m benchmarks.worker_floor [--n 3000]

Runs ``/bin/true`` N times, one at a time, in this process's asyncio loop, twice:

* ``spawn``: ``TaskProcess.spawn`` + ``supervise`` (``posix_spawn``, the pidfd wait, the process
  group clean-up), the worker's environment passed as is;
* ``task``: the same inside a task tree as the worker runs a task (``TaskDirs.create``, the task's
  environment with its ``MITO_*`` paths, ``survey`` and ``discard`` afterwards).

Prints JSON: user and system CPU microseconds per task and the rate of each. The difference
between a real worker's CPU per task (``benchmarks.dispatch``) and ``task`` is what the protocol
(HTTP, JSON, the feeder) and the log line cost. Local only: no network.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from mitosis.worker.executor import TaskProcess, mito_env, supervise, task_env
from mitosis.worker.taskdirs import TaskDirs, survey
from mitosis.worker.wakeup import Flag


def _cpu() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


async def _loop(n: int, *, with_tree: bool, work: Path) -> dict[str, Any]:
    dirs = TaskDirs(work)
    stop = Flag()
    base = dict(os.environ)
    u0, s0 = _cpu()
    t0 = time.monotonic()
    for i in range(n):
        env = base
        tree = None
        if with_tree:
            tree = dirs.create(f"task-{i}")
            env = task_env(base, {}, mito_env(str(tree), f"task-{i}"))
        proc = await TaskProcess.spawn(["/bin/true"], env)
        result = await supervise(proc, deadline=time.monotonic() + 60, stop=stop, cancel=Flag())
        if result.exit_status != 0:
            raise RuntimeError(f"/bin/true ended with wait status {result.exit_status}")
        if tree is not None:
            await dirs.discard(tree, survey(tree).pristine)
    wall = time.monotonic() - t0
    u1, s1 = _cpu()
    dirs.close()
    return {
        "user_us_per_task": round((u1 - u0) / n * 1e6, 1),
        "system_us_per_task": round((s1 - s0) / n * 1e6, 1),
        "cpu_us_per_task": round(((u1 - u0) + (s1 - s0)) / n * 1e6, 1),
        "tasks_per_s": round(n / wall, 1),
    }


async def run(n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mito-floor-") as tmp:
        return {
            "n": n,
            "spawn": await _loop(n, with_tree=False, work=Path(tmp)),
            "task": await _loop(n, with_tree=True, work=Path(tmp)),
        }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=3000, help="tasks per loop (1-100000)")
    args = p.parse_args()
    if not 1 <= args.n <= 100_000:
        p.error("--n must be between 1 and 100000")
    print(json.dumps(asyncio.run(run(args.n)), indent=2))


if __name__ == "__main__":
    main()
