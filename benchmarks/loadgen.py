"""Load generator (issue 8): simulated workers and clients against real coordinators on PostgreSQL.

    python -m benchmarks.loadgen                       # 60 s, 500 workers, 50 clients, 1 then 2 coordinators
    python -m benchmarks.loadgen --duration 600        # the 10-minute soak of issue 8
    python -m benchmarks.loadgen --coordinators 2 --workers 100 --clients 10 --duration 30

Everything binds to 127.0.0.1 and the run is bounded in time (``--duration`` of load, plus set-up
and a drain of at most the long-poll wait). The coordinators (``mito coordinator`` processes) share
one throwaway PostgreSQL database (``MITO_BENCH_PG``, default the server on 127.0.0.1:5432), created
for the run and dropped afterwards.

The simulated peers run in ``--procs`` processes (default 4), each with its own event loop and one
httpx ``AsyncClient`` whose pool is sized to that process's share, so the generator does not queue
requests behind its own connection pool or a single event loop. Each process:

* registers its share of workers (spread round-robin over the coordinators); every worker
  long-polls ``GET /workers/tasks?wait=5s`` and runs what it gets instantly (``Finish`` then
  ``Commit``), and heartbeats every ``--heartbeat`` seconds (default 30 s; the real worker's
  default is 300 s, so this is ten times the production rate);
* runs its share of clients: submit a task, read it back, query the group, ``--client-rate``
  rounds per second each.

Reported (JSON on stdout, a summary line on stderr), per coordinator count: requests, 5xx, other
non-2xx and transport errors per kind; p50/p99 of submit, of fetch, of heartbeat, get and query;
tasks submitted and committed; each coordinator's RSS (process and children) at start (after
set-up), peak and end; the machine's load average (min/max over the run).

"fetch" latency excludes the intentional long-poll wait: for every fetch that returned a task it is
``returned - max(fetch sent, submit acknowledged)``, i.e. the time from the task being available
(or the request being sent, whichever is later) to the worker holding it. "fetch_raw" is the plain
duration of those requests (wait included) and "dispatch" is submit acknowledged → task fetched.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import multiprocessing as mp
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

from benchmarks.common import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    MITO,
    PG_ADMIN_URL,
    free_port,
    log,
    md5_list,
    pct,
    raise_nofile,
)

WAIT = "5s"
GROUP = "load"


# ------------------------------------------------------------------------------ one load process


class Stats:
    """What one process measured; plain data so it crosses the process boundary."""

    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = collections.defaultdict(list)
        self.codes: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)
        self.transport_errors: collections.Counter[str] = collections.Counter()
        self.acked: dict[str, float] = {}  # task uuid -> wall time the submit reply arrived
        self.fetched: dict[str, tuple[float, float]] = {}  # task uuid -> (fetch sent, returned)
        self.committed = 0
        self.submitted = 0

    async def call(
        self, kind: str, client: httpx.AsyncClient, method: str, url: str, **kw: Any
    ) -> httpx.Response | None:
        t0 = time.perf_counter()
        try:
            r = await client.request(method, url, **kw)
        except httpx.HTTPError:
            self.transport_errors[kind] += 1
            return None
        self.codes[kind][r.status_code] += 1
        if r.status_code < 500:
            self.latency[kind].append(time.perf_counter() - t0)
        return r

    def export(self) -> dict[str, Any]:
        return {
            "latency": dict(self.latency),
            "codes": {k: dict(v) for k, v in self.codes.items()},
            "transport_errors": dict(self.transport_errors),
            "acked": self.acked,
            "fetched": self.fetched,
            "committed": self.committed,
            "submitted": self.submitted,
        }


async def _worker(
    stats: Stats, http: httpx.AsyncClient, base: str, token: str, deadline: float, heartbeat: float
) -> None:
    headers = {"Authorization": f"Bearer {token}"}

    async def beat() -> None:
        await asyncio.sleep(random.uniform(0, heartbeat))
        while time.time() < deadline:
            await stats.call("heartbeat", http, "POST", f"{base}/workers/heartbeat", headers=headers)
            await asyncio.sleep(heartbeat)

    beating = asyncio.create_task(beat())
    try:
        while time.time() < deadline:
            sent, t0 = time.time(), time.perf_counter()
            try:
                r = await http.get(
                    f"{base}/workers/tasks", params={"wait": WAIT}, headers=headers, timeout=60
                )
            except httpx.HTTPError:
                stats.transport_errors["fetch"] += 1
                await asyncio.sleep(1)
                continue
            stats.codes["fetch"][r.status_code] += 1
            if r.status_code != 200:
                await asyncio.sleep(1)
                continue
            task = r.json()
            if task is None:
                continue
            stats.latency["fetch_raw"].append(time.perf_counter() - t0)
            stats.fetched[str(task["uuid"])] = (sent, time.time())
            accepted = 0
            for op in ("Finish", {"Commit": {"exit_status": 0, "msg": None}}):
                r = await stats.call(
                    "report", http, "POST", f"{base}/workers/tasks", json={"id": task["id"], "op": op},
                    headers=headers,
                )  # fmt: skip
                accepted += r is not None and r.status_code == 200
            stats.committed += accepted == 2  # both reports accepted
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating


async def _client(
    stats: Stats, http: httpx.AsyncClient, base: str, token: str, deadline: float, rate: float
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    body = {
        "group_name": GROUP, "tags": [], "labels": [], "timeout": "60s", "priority": 0,
        "task_spec": {"args": ["true"]},
    }  # fmt: skip
    await asyncio.sleep(random.uniform(0, 1 / rate))
    while time.time() < deadline:
        started = time.monotonic()
        r = await stats.call("submit", http, "POST", f"{base}/tasks", json=body, headers=headers)
        if r is not None and r.status_code == 200:
            stats.submitted += 1
            task_uuid = str(r.json()["uuid"])
            stats.acked[task_uuid] = time.time()
            await stats.call("get_task", http, "GET", f"{base}/tasks/{task_uuid}", headers=headers)
        await stats.call(
            "query", http, "POST", f"{base}/tasks/query", json={"group_name": GROUP, "limit": 20},
            headers=headers,
        )  # fmt: skip
        await asyncio.sleep(max(0.0, 1 / rate - (time.monotonic() - started)))


async def _register(http: httpx.AsyncClient, url: str, user_token: str) -> str:
    headers = {"Authorization": f"Bearer {user_token}"}
    for attempt in range(5):
        try:
            r = await http.post(f"{url}/workers", json={"groups": [GROUP]}, headers=headers)
            if r.status_code == 200:
                return str(r.json()["token"])
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.5 * (attempt + 1))
    raise RuntimeError(f"could not register a worker at {url}")


async def _process_main(job: dict[str, Any]) -> dict[str, Any]:
    urls: list[str] = job["urls"]
    n_workers, n_clients = job["workers"], job["clients"]
    # A long-poll and a heartbeat per worker, one request at a time per client, some slack.
    limits = httpx.Limits(max_connections=2 * n_workers + n_clients + 16, max_keepalive_connections=None)
    stats = Stats()
    async with httpx.AsyncClient(limits=limits, timeout=60, trust_env=False) as http:
        sem = asyncio.Semaphore(16)

        async def register(i: int) -> str:
            async with sem:
                return await _register(http, urls[i % len(urls)], job["user_token"])

        offset = job["index"]
        tokens = await asyncio.gather(*(register(offset + i) for i in range(n_workers)))
        job["ready"].put(job["index"])
        start_at = job["start"].get()  # the parent's go, once every process has registered
        job["start"].put(start_at)  # let the next process see it too
        await asyncio.sleep(max(0.0, start_at - time.time()))
        deadline = start_at + job["duration"]
        peers = [
            _worker(stats, http, urls[(offset + i) % len(urls)], tok, deadline, job["heartbeat"])
            for i, tok in enumerate(tokens)
        ] + [
            _client(stats, http, urls[(offset + i) % len(urls)], job["user_token"], deadline, job["rate"])
            for i in range(n_clients)
        ]
        await asyncio.gather(*peers)
    return stats.export()


def _process_entry(job: dict[str, Any], out: Any) -> None:
    raise_nofile()
    out.put(asyncio.run(_process_main(job)))


# ----------------------------------------------------------------------------- the parent's side


def _tree_rss(pid: int) -> int:
    try:
        p = psutil.Process(pid)
        procs = [p, *p.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for q in procs:
        with contextlib.suppress(psutil.Error):
            total += q.memory_info().rss
    return total


def _share(total: int, parts: int, i: int) -> int:
    return total // parts + (1 if i < total % parts else 0)


def _merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    latency: dict[str, list[float]] = collections.defaultdict(list)
    codes: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)
    transport: collections.Counter[str] = collections.Counter()
    acked: dict[str, float] = {}
    fetched: dict[str, tuple[float, float]] = {}
    for r in results:
        for k, v in r["latency"].items():
            latency[k].extend(v)
        for k, v in r["codes"].items():
            codes[k].update({int(c): n for c, n in v.items()})
        transport.update(r["transport_errors"])
        acked.update(r["acked"])
        fetched.update(r["fetched"])
    for task_uuid, (sent, returned) in fetched.items():
        ack = acked.get(task_uuid)
        if ack is None:
            continue  # submitted before the measured window
        latency["fetch"].append(max(0.0, returned - max(sent, ack)))
        latency["dispatch"].append(max(0.0, returned - ack))
    out: dict[str, Any] = {}
    for kind in sorted(set(codes) | set(transport) | set(latency)):
        lat = latency.get(kind, [])
        out[kind] = {
            "requests": sum(codes[kind].values()) if kind in codes else len(lat),
            "5xx": sum(n for code, n in codes[kind].items() if code >= 500),
            "other_non_2xx": sum(n for code, n in codes[kind].items() if 300 <= code < 500),
            "transport_errors": transport[kind],
            "p50_ms": round(pct(lat, 50) * 1000, 1) if lat else None,
            "p99_ms": round(pct(lat, 99) * 1000, 1) if lat else None,
        }
    return out


async def _setup(url: str) -> str:
    """The user ``load`` and its group ``load``; returns the user's token."""
    async with httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as http:
        r = await http.post(
            "/login", json={"username": ADMIN_USER, "md5_password": md5_list(ADMIN_PASSWORD), "retain": True}
        )
        r.raise_for_status()
        admin = {"Authorization": f"Bearer {r.json()['token']}"}
        body = {"username": GROUP, "md5_password": md5_list("load-pw"), "admin": False}
        r = await http.post("/admin/users", json=body, headers=admin)
        assert r.status_code in (200, 409), r.text
        r = await http.post(
            "/login", json={"username": GROUP, "md5_password": md5_list("load-pw"), "retain": True}
        )
        r.raise_for_status()
        return str(r.json()["token"])


def _drive(args: argparse.Namespace, urls: list[str], pids: list[int]) -> dict[str, Any]:
    user_token = asyncio.run(_setup(urls[0]))
    ctx = mp.get_context("spawn")
    ready, start, out = ctx.Queue(), ctx.Queue(), ctx.Queue()
    procs = []
    worker_offset = 0
    for i in range(args.procs):
        n_workers = _share(args.workers, args.procs, i)
        job = {
            "index": worker_offset,
            "urls": urls,
            "workers": n_workers,
            "clients": _share(args.clients, args.procs, i),
            "user_token": user_token,
            "duration": args.duration,
            "heartbeat": args.heartbeat,
            "rate": args.client_rate,
            "ready": ready,
            "start": start,
        }
        worker_offset += n_workers
        p = ctx.Process(target=_process_entry, args=(job, out), daemon=True)
        p.start()
        procs.append(p)
    log(f"registering {args.workers} workers from {args.procs} processes")
    for _ in procs:
        ready.get(timeout=600)
    start_at = time.time() + 1.0
    start.put(start_at)
    log(
        f"driving for {args.duration:.0f} s: {args.workers} workers, {args.clients} clients, "
        f"{len(urls)} coordinator(s), {args.procs} load processes"
    )
    time.sleep(max(0.0, start_at - time.time()))
    rss_start = [_tree_rss(p) for p in pids]
    peak = list(rss_start)
    loads: list[float] = []
    results: list[dict[str, Any]] = []
    psutil.cpu_percent()
    cpu: list[float] = []
    while len(results) < len(procs):
        with contextlib.suppress(Exception):
            results.append(out.get(timeout=1.0))
            continue
        if time.time() < start_at + args.duration:
            for i, pid in enumerate(pids):
                peak[i] = max(peak[i], _tree_rss(pid))
            loads.append(os.getloadavg()[0])
            cpu.append(psutil.cpu_percent())
        if all(not p.is_alive() for p in procs) and out.empty():
            raise RuntimeError("a load process died; see its traceback above")
    elapsed = time.time() - start_at
    rss_end = [_tree_rss(p) for p in pids]
    for p in procs:
        p.join(timeout=30)
    summary = _merge(results)
    return {
        "coordinators": len(urls),
        "load_processes": args.procs,
        "duration_s": round(elapsed, 1),
        "workers": args.workers,
        "clients": args.clients,
        "heartbeat_s": args.heartbeat,
        "tasks_submitted": sum(r["submitted"] for r in results),
        "tasks_committed": sum(r["committed"] for r in results),
        "total_5xx": sum(v["5xx"] for v in summary.values()),
        "requests": summary,
        "rss_mib": [
            {"start": round(s / 2**20, 1), "peak": round(p / 2**20, 1), "end": round(e / 2**20, 1)}
            for s, p, e in zip(rss_start, peak, rss_end, strict=True)
        ],
        "loadavg_1m": {"min": round(min(loads, default=0.0), 2), "max": round(max(loads, default=0.0), 2)},
        "cpu_percent_mean": round(sum(cpu) / len(cpu), 1) if cpu else None,
        "cpus": os.cpu_count(),
    }


def _start_coordinator(data: Path, db_url: str, i: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        MITO, "coordinator", "--bind", f"127.0.0.1:{port}", "--db", db_url, "--data-dir", str(data),
        "--admin-user", ADMIN_USER, "--admin-password", ADMIN_PASSWORD, "--heartbeat-timeout", "120s",
    ]  # fmt: skip
    with (data / f"coordinator-{i}.log").open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=1, trust_env=False).status_code == 200:
                return proc, url
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"coordinator {i} did not start; see {data}/coordinator-{i}.log")
        time.sleep(0.1)


async def _end_state(db_url: str) -> dict[str, Any]:
    """What the database holds once the load stopped: archived tasks, and the active ones by state
    (a Running task here is one whose worker lost a reply under load; the task-timeout backstop
    ends it later, so it is reported, not hidden)."""
    conn = await asyncpg.connect(db_url)
    try:
        archived = await conn.fetchval("SELECT count(*) FROM archived_tasks")
        rows = await conn.fetch("SELECT state, count(*) AS n FROM active_tasks GROUP BY state")
    finally:
        await conn.close()
    names = {0: "Pending", 1: "Ready", 2: "Running", 3: "Finished", 4: "Cancelled", 5: "Unknown"}
    return {"archived": archived, "active": {names.get(r["state"], str(r["state"])): r["n"] for r in rows}}


def run(args: argparse.Namespace, count: int) -> dict[str, Any]:
    db = f"mito_load_{uuid.uuid4().hex[:10]}"

    async def admin_sql(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin_sql(f'CREATE DATABASE "{db}"'))
    db_url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + db
    data = Path(tempfile.mkdtemp(prefix="mito-load-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        urls = []
        for i in range(count):
            proc, url = _start_coordinator(data, db_url, i)
            procs.append(proc)
            urls.append(url)
        result = _drive(args, urls, [p.pid for p in procs])
        result["coordinators_alive_at_end"] = sum(p.poll() is None for p in procs)
        result["end_state"] = asyncio.run(_end_state(db_url))
        return result
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        if args.keep_logs:
            log(f"coordinator logs kept in {data}")
        else:
            shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load per configuration")
    parser.add_argument("--workers", type=int, default=500)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--procs", type=int, default=4, help="load-generating processes")
    parser.add_argument(
        "--client-rate", type=float, default=2.0, help="submit+get+query rounds per client per s"
    )
    parser.add_argument("--heartbeat", type=float, default=30.0, help="seconds between a worker's heartbeats")
    parser.add_argument("--coordinators", default="1,2", help="comma-separated coordinator counts to run")
    parser.add_argument("--keep-logs", action="store_true", help="keep the coordinators' data dir and logs")
    args = parser.parse_args()
    raise_nofile()
    results = [run(args, int(n)) for n in args.coordinators.split(",")]
    json.dump(results, sys.stdout, indent=2)
    print()
    for r in results:
        req = r["requests"]
        log(
            f"{r['coordinators']} coordinator(s): 5xx={r['total_5xx']} "
            f"submit p50/p99={req.get('submit', {}).get('p50_ms')}/{req.get('submit', {}).get('p99_ms')} ms "
            f"fetch p50/p99={req.get('fetch', {}).get('p50_ms')}/{req.get('fetch', {}).get('p99_ms')} ms "
            f"committed={r['tasks_committed']}/{r['tasks_submitted']} rss={r['rss_mib']} "
            f"load={r['loadavg_1m']} end_state={r['end_state']}"
        )


if __name__ == "__main__":
    main()
