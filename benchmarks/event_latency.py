"""Event latency: from a state change (a task submitted over HTTP) to a subscribed SSE client.

Reproduce (prints one JSON document on stdout; progress on stderr)::

    .venv/bin/python -m benchmarks.event_latency            # SQLite, PostgreSQL, PostgreSQL across 2 coordinators
    .venv/bin/python -m benchmarks.event_latency --n 500 --kinds sqlite

Per run: real ``mito coordinator`` processes on a throwaway database; one client holds
``GET /events`` open while another submits ``--n`` tasks one at a time (``POST /tasks``). For each
task, latency = the event's arrival at the subscriber minus the moment the submit request was
sent. The same-run baseline is the submit round trip itself (request sent → response read), so
``ratio`` = event latency / submit round trip (1.0 would mean the event costs nothing beyond the
change). ``after_response_ms`` is arrival minus the submit response (negative: the event arrived
first). ``change_to_client`` is the figure the target is about: arrival minus the event's own
``time`` (taken by the coordinator when it recorded the change, in the change's transaction; same
host, same clock), i.e. the commit, the wake-up, the read and the delivery, without the client's
request parsing and authentication that come before the change. The ``postgres-2coord`` run
submits on one coordinator and reads the stream on another (PostgreSQL NOTIFY between them).
Target: p50 under 10 ms on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import coordinator, database, log, login, machine_info, summary_ms, task_req, tmpdir
from mitosis.wire.codecs import parse_datetime


async def _subscribe(
    url: str, token: str, arrivals: dict[str, float], changes: dict[str, float], ready: asyncio.Event
) -> None:
    async with (
        httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(10, read=None)) as client,
        client.stream(
            "GET", "/events", params={"kind": "task"}, headers={"Authorization": f"Bearer {token}"}
        ) as r,
    ):
        r.raise_for_status()
        async for line in r.aiter_lines():
            if line.startswith(": connected"):
                ready.set()
            elif line.startswith("data: "):
                arrived, wall = time.perf_counter(), time.time()
                data = json.loads(line[6:])
                arrivals[data["uuid"]] = arrived
                changes[data["uuid"]] = wall - parse_datetime(data["time"]).timestamp()


async def measure(submit_url: str, stream_url: str, n: int) -> dict[str, Any]:
    arrivals: dict[str, float] = {}
    changes: dict[str, float] = {}
    ready = asyncio.Event()
    async with httpx.AsyncClient(base_url=submit_url, timeout=30) as client:
        token = await login(client)
        async with httpx.AsyncClient(base_url=stream_url, timeout=30) as other:
            stream_token = token if stream_url == submit_url else await login(other)
        client.headers["Authorization"] = f"Bearer {token}"
        reader = asyncio.create_task(_subscribe(stream_url, stream_token, arrivals, changes, ready))
        await asyncio.wait_for(ready.wait(), 30)
        latency: list[float] = []
        rtt: list[float] = []
        after: list[float] = []
        from_change: list[float] = []
        req = task_req(["true"], timeout="1m", priority=0, tags=[], labels=[])
        for i in range(n + 10):
            t0 = time.perf_counter()
            r = await client.post("/tasks", json=req)
            t1 = time.perf_counter()
            r.raise_for_status()
            uuid = r.json()["uuid"]
            deadline = t1 + 10
            while uuid not in arrivals:
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"no event for task {uuid}")
                await asyncio.sleep(0.0002)
            if i >= 10:  # the first few warm up connections and caches
                latency.append(arrivals[uuid] - t0)
                rtt.append(t1 - t0)
                after.append(arrivals[uuid] - t1)
                from_change.append(changes[uuid])
        reader.cancel()
    lat, base = summary_ms(latency), summary_ms(rtt)
    return {
        "event_latency": lat,
        "submit_rtt_baseline": base,
        "after_response_ms": summary_ms(after),
        "change_to_client": summary_ms(from_change),
        "ratio_p50": round(lat["p50_ms"] / base["p50_ms"], 3),
    }


async def run(tmp: Path, n: int, kinds: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"n_events": n, "runs": []}
    for kind in kinds:
        db_kind = "postgresql" if kind.startswith("postgres") else "sqlite"
        async with database(db_kind, tmp) as db:
            with coordinator(db.url, tmp / f"{kind}-a") as a:
                if kind == "postgres-2coord":
                    with coordinator(db.url, tmp / f"{kind}-b") as b:
                        res = await measure(a.url, b.url, n)
                else:
                    res = await measure(a.url, a.url, n)
        res["database"] = kind
        change = res["change_to_client"]
        log(
            f"{kind}: change -> client p50 {change['p50_ms']} ms, p99 {change['p99_ms']} ms; "
            f"submit sent -> client p50 {res['event_latency']['p50_ms']} ms"
        )
        out["runs"].append(res)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=300, help="events measured per run (>= 200)")
    parser.add_argument("--kinds", nargs="+", default=["sqlite", "postgres", "postgres-2coord"])
    args = parser.parse_args()
    machine = machine_info()  # runs its own event loop: call it outside ours
    with tmpdir("mito-bench-events") as tmp:
        result = asyncio.run(run(tmp, args.n, args.kinds))
    print(json.dumps({"machine": machine, **result}, indent=2))


if __name__ == "__main__":
    main()
