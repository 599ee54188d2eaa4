"""Real clusters for end-to-end tests: `mito worker` processes around live coordinators, plus task helpers.

    with worker_pool(tmp_path / "workers") as pool:
        pool.start_workers(coord, "alice", token, 4, groups=["lab"], tags=["gpu"])
        uuid = submit(client, "lab", ["sh", "-c", "echo hi"])
        info = wait_task(client, uuid)            # bounded: raises with the worker logs on timeout

Every worker gets its own XDG cache/config directories and a credential file holding a token the
test obtained beforehand, so parallel workers never log in (0.6.8 logins rotate the user's
signature and would invalidate each other). On exit every worker is stopped (SIGTERM, then
SIGKILL) and any process whose command line mentions the pool's directory is killed, so task
processes left behind by a SIGKILLed worker never outlive the test.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.support.coordinator import LiveCoordinator, coordinator_process

FINAL_STATES = {"Finished", "Cancelled"}
_REGISTERED = re.compile(r"worker ([0-9a-f-]{36}) registered")


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# ------------------------------------------------------------------------------------------- workers


@dataclass
class WorkerProc:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    home: Path
    coordinator: LiveCoordinator

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def worker_uuid(self) -> str | None:
        found = _REGISTERED.search(self.log_text())
        return found.group(1) if found else None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM (graceful: the worker unregisters), SIGKILL if it does not exit in ``timeout``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: the worker vanishes without unregistering."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@dataclass
class WorkerPool:
    root: Path
    workers: list[WorkerProc] = field(default_factory=list)

    def spawn(
        self,
        coord: LiveCoordinator,
        user: str,
        token: str,
        *,
        groups: Sequence[str] = (),
        tags: Sequence[str] = (),
        polling_interval: str = "1s",
        heartbeat_interval: str = "1s",
        long_poll: str = "10s",
        redis: bool = False,
        extra: Sequence[str] = (),
    ) -> WorkerProc:
        """Start one `mito worker` (not waiting for its registration)."""
        name = f"w{len(self.workers)}"
        home = self.root / name
        (home / "cache").mkdir(parents=True, exist_ok=True)
        (home / "config").mkdir(parents=True, exist_ok=True)
        cred = home / "credentials"
        cred.write_text(f"{user}:{token}")
        argv = [
            sys.executable,
            "-m",
            "mitosis.cli.main",
            "worker",
            "-c",
            coord.url,
            "--credential-path",
            str(cred),
            "-u",
            user,
            "--polling-interval",
            polling_interval,
            "--heartbeat-interval",
            heartbeat_interval,
            "--long-poll",
            long_poll,
            "--work-dir",
            str(home / "work"),
        ]
        if not redis:
            argv.append("--skip-redis")
        if groups:
            argv += ["-g", ",".join(groups)]
        if tags:
            argv += ["-t", ",".join(tags)]
        argv += list(extra)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MITO_")}
        env.update(NO_COLOR="1", XDG_CACHE_HOME=str(home / "cache"), XDG_CONFIG_HOME=str(home / "config"))
        log = home / "worker.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=home
            )
        worker = WorkerProc(name=name, proc=proc, log=log, home=home, coordinator=coord)
        self.workers.append(worker)
        return worker

    def wait_registered(self, workers: Iterable[WorkerProc], timeout: float = 30.0) -> None:
        for w in workers:

            def ready(w: WorkerProc = w) -> bool:
                if not w.alive():
                    raise RuntimeError(f"worker {w.name} exited with {w.proc.returncode}:\n{w.log_text()}")
                return w.worker_uuid() is not None

            wait_for(ready, timeout, f"worker {w.name} to register")

    def start_workers(
        self, coord: LiveCoordinator, user: str, token: str, count: int = 1, **kwargs: Any
    ) -> list[WorkerProc]:
        """Start ``count`` workers in parallel and wait until every one has registered."""
        started = [self.spawn(coord, user, token, **kwargs) for _ in range(count)]
        self.wait_registered(started)
        return started

    def logs(self) -> str:
        return "\n".join(f"----- {w.name} (pid {w.pid}) -----\n{w.log_text()[-4000:]}" for w in self.workers)

    def close(self) -> None:
        for w in self.workers:
            if w.alive():
                w.proc.send_signal(signal.SIGTERM)
        for w in self.workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                w.proc.wait(timeout=15)
            w.kill()
        kill_processes_mentioning(str(self.root))


@contextlib.contextmanager
def worker_pool(root: Path) -> Iterator[WorkerPool]:
    root.mkdir(parents=True, exist_ok=True)
    pool = WorkerPool(root)
    try:
        yield pool
    finally:
        pool.close()


# ------------------------------------------------------------------------------------- processes


def user_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a user whose home, cache, config and data dirs are all under ``home``
    (no ``MITO_*`` settings leak in from the test run), plus ``extra`` variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MITO_")}
    for name in ("cache", "config", "data"):
        (home / name).mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(home),
        XDG_CACHE_HOME=str(home / "cache"),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_DATA_HOME=str(home / "data"),
        NO_COLOR="1",
        **extra,
    )
    return env


def processes_mentioning(marker: str) -> list[psutil.Process]:
    """Live processes (not zombies) whose command line contains ``marker``."""
    found = []
    me = os.getpid()
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if p.info["pid"] == me or p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if any(marker in part for part in p.info["cmdline"] or ()):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def kill_processes_mentioning(marker: str) -> None:
    for p in processes_mentioning(marker):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            p.kill()


# ----------------------------------------------------------------------------------------- tasks


def setup_user(coord: LiveCoordinator, username: str, password: str = "pw") -> tuple[str, httpx.Client]:
    """Create a user; return a retained token and a client using it (close it yourself)."""
    token = coord.create_user(username, password)
    return token, coord.client(token)


def create_group(client: httpx.Client, name: str, members: dict[str, str] | None = None) -> None:
    r = client.post("/groups", json={"group_name": name})
    assert r.status_code == 200, r.text
    if members:
        r = client.put(f"/groups/{name}/users", json={"relations": members})
        assert r.status_code == 200, r.text


def submit(
    client: httpx.Client,
    group: str,
    args: Sequence[str],
    *,
    tags: Sequence[str] = (),
    labels: Sequence[str] = (),
    priority: int = 0,
    timeout: str = "60s",
    **spec: Any,
) -> str:
    """``POST /tasks``; returns the new task's uuid."""
    body = {
        "group_name": group,
        "tags": list(tags),
        "labels": list(labels),
        "timeout": timeout,
        "priority": priority,
        "task_spec": {"args": list(args), **spec},
    }
    r = client.post("/tasks", json=body)
    assert r.status_code == 200, r.text
    return str(r.json()["uuid"])


def submit_many(
    client: httpx.Client, group: str, args_list: Sequence[Sequence[str]], chunk: int = 500
) -> list[str]:
    """``POST /tasks/submit`` in chunks; returns the uuids in order."""
    out: list[str] = []
    for start in range(0, len(args_list), chunk):
        body = {
            "tasks": [
                {"group_name": group, "tags": [], "labels": [], "timeout": "60s", "priority": 0,
                 "task_spec": {"args": list(a)}}
                for a in args_list[start : start + chunk]
            ]
        }  # fmt: skip
        r = client.post("/tasks/submit", json=body)
        assert r.status_code == 200, r.text
        for res in r.json()["results"]:
            assert "Ok" in res, res
            out.append(str(res["Ok"]["uuid"]))
    return out


def get_task(client: httpx.Client, uuid: str) -> dict[str, Any]:
    r = client.get(f"/tasks/{uuid}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def wait_task(
    client: httpx.Client,
    uuid: str,
    timeout: float = 30.0,
    until: Callable[[dict[str, Any]], bool] | None = None,
    pool: WorkerPool | None = None,
) -> dict[str, Any]:
    """Poll ``GET /tasks/<uuid>`` until ``until(info)`` (default: committed, i.e. a result is set).

    Returns the whole response (``info`` and ``artifacts``); on timeout the assertion message
    carries the last answer and the workers' logs.
    """
    done = until or (lambda info: info["state"] in FINAL_STATES and info["result"] is not None)
    last: dict[str, Any] = {}

    def check() -> bool:
        nonlocal last
        last = get_task(client, uuid)
        return bool(done(last["info"]))

    try:
        wait_for(check, timeout, f"task {uuid}", interval=0.1)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; last answer: {last}\n{pool.logs() if pool else ''}") from None
    return last


def wait_state(
    client: httpx.Client, uuid: str, state: str, timeout: float = 30.0, **kw: Any
) -> dict[str, Any]:
    return wait_task(client, uuid, timeout, until=lambda info: info["state"] == state, **kw)


def query_tasks(client: httpx.Client, **filters: Any) -> list[dict[str, Any]]:
    r = client.post("/tasks/query", json=filters)
    assert r.status_code == 200, r.text
    return list(r.json()["tasks"])


def count_tasks(client: httpx.Client, **filters: Any) -> int:
    r = client.post("/tasks/query", json={**filters, "count": True})
    assert r.status_code == 200, r.text
    return int(r.json()["count"])


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


# ---------------------------------------------------------------------------------- coordinators


@contextlib.contextmanager
def fast_coordinator(
    data_dir: Path,
    db_url: str,
    *args: str,
    heartbeat_timeout: str = "4s",
    port: int | None = None,
    log: Path | None = None,
) -> Iterator[LiveCoordinator]:
    """A `mito coordinator` process whose backstops act within seconds (reaper every 0.5 s)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir / "fast.toml"
    config.write_text('[coordinator]\nreaper_interval = "500ms"\ntask_timeout_grace = "5s"\n')
    with coordinator_process(
        data_dir,
        db_url,
        "--config",
        str(config),
        "--heartbeat-timeout",
        heartbeat_timeout,
        *args,
        port=port,
        log=log,
    ) as coord:
        yield coord
