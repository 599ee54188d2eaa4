"""The same-run baseline: a bare Python loop spawning /bin/true with a given concurrency.

It spawns the way the worker does (standard asyncio loop, pidfd child watcher), so the ratio
"Mitosis / baseline" is the share of raw spawn capacity the platform keeps.
Run alone: ``python -m benchmarks.baseline --n 2000 --concurrency 4``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def _install_pidfd_watcher() -> None:
    if sys.version_info < (3, 12) and hasattr(asyncio, "PidfdChildWatcher"):
        watcher = asyncio.PidfdChildWatcher()
        watcher.attach_loop(asyncio.get_running_loop())
        asyncio.set_child_watcher(watcher)


async def spawn_loop(n: int, concurrency: int, args: list[str]) -> float:
    """Spawn ``args`` n times, ``concurrency`` at a time; tasks per second."""
    _install_pidfd_watcher()
    remaining = n

    async def lane() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            proc = await asyncio.create_subprocess_exec(*args, start_new_session=True)
            await proc.wait()

    t0 = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return n / (time.perf_counter() - t0)


async def start_latency(n: int) -> list[float]:
    """Seconds from the spawn call to the timestamp written by the same command the latency bench runs."""
    _install_pidfd_watcher()
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            path = Path(tmp) / str(i)
            t0 = time.time()
            proc = await asyncio.create_subprocess_exec(
                "/bin/sh", "-c", 'date +%s.%N > "$0"', str(path), start_new_session=True
            )
            await proc.wait()
            out.append(float(path.read_text()) - t0)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--latency", type=int, default=0, help="instead: spawn-to-start latency over N runs")
    a = p.parse_args()
    if a.latency:
        print(json.dumps({"start_latency_s": asyncio.run(start_latency(a.latency))}))
        return
    rate = asyncio.run(spawn_loop(a.n, a.concurrency, ["/bin/true"]))
    print(json.dumps({"n": a.n, "concurrency": a.concurrency, "tasks_per_s": rate, "pid": os.getpid()}))


if __name__ == "__main__":
    main()
