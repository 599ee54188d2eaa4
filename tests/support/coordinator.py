"""Real coordinators for tests: in-process (uvicorn in a thread) or as a `mito coordinator` process.

Both bind 127.0.0.1 on a free port and use a fresh data directory. The database is whatever URL the
caller passes (a throwaway SQLite file or a fresh PostgreSQL database, see ``databases.py``).
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ADMIN_USER = "mitosis_admin"
ADMIN_PASSWORD = "test-admin-pw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def md5(password: str) -> list[int]:
    return list(hashlib.md5(password.encode()).digest())


def wait_healthy(url: str, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"coordinator exited with {proc.returncode} before becoming healthy")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"coordinator at {url} not healthy after {timeout}s")


@dataclass
class LiveCoordinator:
    url: str
    data_dir: Path
    db_url: str
    admin_user: str = ADMIN_USER
    admin_password: str = ADMIN_PASSWORD
    extra: dict[str, Any] = field(default_factory=dict)

    def login(self, username: str | None = None, password: str | None = None) -> str:
        r = httpx.post(
            f"{self.url}/login",
            json={
                "username": username or self.admin_user,
                "md5_password": md5(password or self.admin_password),
                "retain": True,
            },
        )
        r.raise_for_status()
        return str(r.json()["token"])

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def admin(self) -> httpx.Client:
        return self.client(self.login())

    def create_user(self, username: str, password: str, admin: bool = False) -> str:
        """Create a user through the admin API and return a token for them."""
        with self.admin() as c:
            r = c.post(
                "/admin/users", json={"username": username, "md5_password": md5(password), "admin": admin}
            )
            assert r.status_code == 200, r.text
        return self.login(username, password)


def coordinator_settings(data_dir: Path, db_url: str, port: int, **extra: Any) -> Any:
    from mitosis.config import CoordinatorSettings

    return CoordinatorSettings(
        bind=f"127.0.0.1:{port}",
        db_url=db_url,
        data_dir=data_dir,
        admin_user=ADMIN_USER,
        admin_password=ADMIN_PASSWORD,
        **extra,
    )


@contextmanager
def inprocess_coordinator(data_dir: Path, db_url: str, **extra: Any) -> Iterator[LiveCoordinator]:
    """A coordinator served by uvicorn on a background thread of this process."""
    from mitosis.coordinator.server import CoordinatorServer

    port = free_port()
    settings = coordinator_settings(data_dir, db_url, port, **extra)
    server = CoordinatorServer(settings)
    app = server.app
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url)
        yield LiveCoordinator(url=url, data_dir=data_dir, db_url=db_url, extra={"app": app})
    finally:
        server.request_shutdown()
        thread.join(timeout=30)


@contextmanager
def coordinator_process(
    data_dir: Path, db_url: str, *args: str, port: int | None = None, log: Path | None = None
) -> Iterator[LiveCoordinator]:
    """`mito coordinator` as a separate process (for kill/restart tests and e2e)."""
    port = port or free_port()
    log = log or data_dir / "coordinator.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "mitosis.cli.main",
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
        *args,
    ]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1"}
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc=proc)
        yield LiveCoordinator(url=url, data_dir=data_dir, db_url=db_url, extra={"proc": proc, "log": log})
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
