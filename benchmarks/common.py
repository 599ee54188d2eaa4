"""Shared plumbing: machine facts, throwaway databases, coordinator and worker processes, timing."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import platform
import resource
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
MITO = str(VENV_BIN / "mito")
PG_ADMIN_URL = os.environ.get("MITO_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
ADMIN_USER = "mitosis_admin"
ADMIN_PASSWORD = "bench-admin-pw"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def md5_list(password: str) -> list[int]:
    return list(hashlib.md5(password.encode()).digest())


def pct(values: Sequence[float], p: float) -> float:
    """The p-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def summary_ms(values: Sequence[float]) -> dict[str, float]:
    """p50/p99/mean/max in milliseconds of values given in seconds."""
    return {
        "n": len(values),
        "p50_ms": round(pct(values, 50) * 1000, 3),
        "p99_ms": round(pct(values, 99) * 1000, 3),
        "mean_ms": round(statistics.fmean(values) * 1000, 3) if values else float("nan"),
        "max_ms": round(max(values) * 1000, 3) if values else float("nan"),
    }


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError):
        mem_kb = int(Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1])

    async def pg_version() -> str:
        conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
        try:
            settings = {
                r["name"]: r["setting"]
                for r in await conn.fetch(
                    "SELECT name, setting FROM pg_settings WHERE name IN "
                    "('synchronous_commit','shared_buffers','max_connections','fsync')"
                )
            }
            return f"{await conn.fetchval('SHOW server_version')} {json.dumps(settings, sort_keys=True)}"
        finally:
            await conn.close()

    try:
        pg = asyncio.run(pg_version())
    except Exception as exc:  # the machine block must not fail the whole run
        pg = f"unavailable: {exc}"
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "postgresql": pg,
        "sqlite": sqlite3.sqlite_version,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


# --------------------------------------------------------------------------------------- databases


class Database:
    """A throwaway database: ``url`` for the coordinator, plus a direct connection for checks."""

    def __init__(self, kind: str, tmp: Path) -> None:
        self.kind = kind
        self.tmp = tmp
        self.name = f"mito_bench_{uuid.uuid4().hex[:10]}"
        self._pg: asyncpg.Connection | None = None
        if kind == "sqlite":
            self.path = tmp / f"{self.name}.db"
            self.url = f"sqlite:///{self.path}"
        else:
            self.url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + self.name

    async def create(self) -> None:
        if self.kind == "postgresql":
            admin = await asyncpg.connect(PG_ADMIN_URL)
            try:
                await admin.execute(f'CREATE DATABASE "{self.name}"')
            finally:
                await admin.close()

    async def drop(self) -> None:
        if self._pg is not None:
            await self._pg.close()
            self._pg = None
        if self.kind == "postgresql":
            admin = await asyncpg.connect(PG_ADMIN_URL)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            finally:
                await admin.close()

    async def pg(self) -> asyncpg.Connection:
        if self._pg is None:
            self._pg = await asyncpg.connect(self.url)
        return self._pg

    async def scalar(self, sql: str) -> Any:
        if self.kind == "postgresql":
            return await (await self.pg()).fetchval(sql)

        def run() -> Any:
            conn = sqlite3.connect(self.path, timeout=30)
            try:
                row = conn.execute(sql).fetchone()
                return None if row is None else row[0]
            finally:
                conn.close()

        return await asyncio.to_thread(run)

    async def rows(self, sql: str) -> list[tuple[Any, ...]]:
        if self.kind == "postgresql":
            return [tuple(r) for r in await (await self.pg()).fetch(sql)]

        def run() -> list[tuple[Any, ...]]:
            conn = sqlite3.connect(self.path, timeout=30)
            try:
                return list(conn.execute(sql).fetchall())
            finally:
                conn.close()

        return await asyncio.to_thread(run)


@contextlib.asynccontextmanager
async def database(kind: str, tmp: Path) -> AsyncIterator[Database]:
    db = Database(kind, tmp)
    await db.create()
    try:
        yield db
    finally:
        await db.drop()


# ------------------------------------------------------------------------------------- processes


def _preexec() -> None:
    raise_nofile()


@dataclass
class Coordinator:
    url: str
    proc: subprocess.Popen[bytes]
    data_dir: Path

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


def start_coordinator(
    db_url: str, data_dir: Path, *, port: int | None = None, env: dict[str, str] | None = None
) -> Coordinator:
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        MITO,
        "coordinator",
        "--bind",
        f"127.0.0.1:{port}",
        "--db",
        db_url,
        "--data-dir",
        str(data_dir),
        "--admin-user",
        ADMIN_USER,
        "--admin-password",
        ADMIN_PASSWORD,
    ]
    with (data_dir / f"coordinator-{port}.log").open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1", **(env or {})},
            preexec_fn=_preexec,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"coordinator exited with {proc.returncode}; see {data_dir}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return Coordinator(url, proc, data_dir)
        time.sleep(0.05)
    proc.kill()
    raise TimeoutError(f"coordinator at {url} not healthy after 60 s")


@contextlib.contextmanager
def coordinator(db_url: str, data_dir: Path, **kw: Any) -> Iterator[Coordinator]:
    c = start_coordinator(db_url, data_dir, **kw)
    try:
        yield c
    finally:
        c.stop()


@dataclass
class WorkerPool:
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)


def _retained_token(url: str) -> str:
    # One login with retain: logins without it rotate the user's signature (0.6.8), so workers
    # logging in at once would invalidate each other's tokens.
    r = httpx.post(
        f"{url}/login",
        json={"username": ADMIN_USER, "md5_password": md5_list(ADMIN_PASSWORD), "retain": True},
        timeout=60,
    )
    r.raise_for_status()
    return str(r.json()["token"])


def start_workers(url: str, n: int, tmp: Path, *, extra: Sequence[str] = ()) -> WorkerPool:
    from mitosis.client.credentials import CredentialStore

    pool = WorkerPool()
    token = _retained_token(url)
    for i in range(n):
        wdir = tmp / f"worker-{uuid.uuid4().hex[:8]}-{i}"
        wdir.mkdir(parents=True)
        CredentialStore(wdir / "credentials").put(ADMIN_USER, token)
        cmd = [
            MITO,
            "worker",
            "-c",
            url,
            "-u",
            ADMIN_USER,
            "-p",
            ADMIN_PASSWORD,
            "--credential-path",
            str(wdir / "credentials"),
            "--work-dir",
            str(wdir / "work"),
            "--polling-interval",
            "1s",
            "--heartbeat-interval",
            "30s",
            "--skip-redis",
            *extra,
        ]
        with (wdir / "worker.log").open("ab") as out:
            pool.procs.append(
                subprocess.Popen(
                    cmd,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "NO_COLOR": "1"},
                )
            )
    return pool


async def wait_for(db: Database, sql: str, target: int, timeout: float, poll: float = 0.02) -> float:
    """Poll ``sql`` (a count) until it reaches ``target``; the monotonic time it did. Bounded by timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await db.scalar(sql)
        if value is not None and int(value) >= target:
            return time.monotonic()
        await asyncio.sleep(poll)
    raise TimeoutError(f"{sql!r} did not reach {target} within {timeout:.0f} s (last {value})")


async def login(client: httpx.AsyncClient) -> str:
    r = await client.post(
        "/login", json={"username": ADMIN_USER, "md5_password": md5_list(ADMIN_PASSWORD), "retain": True}
    )
    r.raise_for_status()
    return str(r.json()["token"])


def task_req(args: list[str], group: str = ADMIN_USER, **extra: Any) -> dict[str, Any]:
    return {"group_name": group, "task_spec": {"args": args}, **extra}


async def submit_batch(client: httpx.AsyncClient, reqs: list[dict[str, Any]], chunk: int = 10_000) -> None:
    for start in range(0, len(reqs), chunk):
        r = await client.post("/tasks/submit", json={"tasks": reqs[start : start + chunk]})
        r.raise_for_status()
        body = r.json()
        bad = [x for x in body["results"] if "Ok" not in x]
        if bad:
            raise RuntimeError(f"submission refused: {bad[:3]}")


@contextlib.contextmanager
def tmpdir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (from /proc, no extra dependency)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def proc_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0
