"""A whole local cluster in one command: a coordinator and N workers on the embedded defaults.

``mito up`` starts ``mito coordinator`` (SQLite + a local blob directory in the user data dir),
logs in as the bootstrap admin and stores the token in the credential file (so ``mito client``
works straight away), starts the workers with that credential file, runs a demo task (``echo``
with captured output) and prints what it printed. With ``once`` it then stops everything;
otherwise it keeps the cluster running until Ctrl-C.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx

from mitosis.client import MitoClient
from mitosis.config import CoordinatorSettings, default_credential_path
from mitosis.wire import models as m
from mitosis.wire.enums import ArtifactContentType

DEMO_MESSAGE = "hello from a Mitosis task"


class UpError(Exception):
    """A local cluster that could not start; the message says why and what to do."""


@dataclass
class LocalCluster:
    bind: str
    data_dir: Path
    workers: int
    credential_path: Path
    log: Callable[[str], None]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.bind}"

    def _spawn(self, args: list[str], log_name: str) -> subprocess.Popen[bytes]:
        log_dir = self.data_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        with (log_dir / log_name).open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "mitosis.cli.main", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.procs.append(proc)
        return proc

    def start(self) -> None:
        try:
            httpx.get(f"{self.url}/health", timeout=1)
        except httpx.HTTPError:
            pass
        else:
            raise UpError(f"something already answers on {self.url}; stop it or pass --bind HOST:PORT")
        coord = self._spawn(
            ["coordinator", "--bind", self.bind, "--data-dir", str(self.data_dir)], "up-coordinator.log"
        )
        deadline = time.monotonic() + 60
        while True:
            if coord.poll() is not None:
                raise UpError(
                    f"the coordinator exited with status {coord.returncode}; "
                    f"see {self.data_dir / 'logs' / 'up-coordinator.log'}"
                )
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise UpError("the coordinator did not become healthy within 60 s")
            time.sleep(0.1)
        self.log(f"coordinator  {self.url}  (data in {self.data_dir})")
        settings = CoordinatorSettings(data_dir=self.data_dir)
        password_file = settings.key_dir / "admin-password"
        if not password_file.exists():
            raise UpError(
                f"no generated admin password at {password_file}: this data dir was set up with a "
                "configured --admin-password; log in with `mito client login` instead"
            )
        password = password_file.read_text(encoding="utf-8").strip()
        with MitoClient(self.url, credential_path=self.credential_path) as client:
            token = client.login(settings.admin_user, password, retain=True)
        from mitosis.client.credentials import CredentialStore

        CredentialStore(self.credential_path).put(settings.admin_user, token)
        self.admin_user = settings.admin_user
        for i in range(self.workers):
            self._spawn(
                [
                    "worker",
                    "-c",
                    self.url,
                    "-u",
                    settings.admin_user,
                    "--credential-path",
                    str(self.credential_path),
                    "--polling-interval",
                    "5s",
                    "--heartbeat-interval",
                    "30s",
                    "--long-poll",
                    "30s",
                ],
                f"up-worker-{i}.log",
            )
        self.log(f"workers      {self.workers} (logs in {self.data_dir / 'logs'})")
        self.log(f"admin        {settings.admin_user} (password in {password_file})")

    def run_demo(self, timeout: float = 60.0) -> tuple[int, str]:
        """Submit ``echo`` with captured output, wait for it, return (exit status, its stdout)."""
        with MitoClient(self.url, credential_path=self.credential_path, username=self.admin_user) as client:
            client.token = client.store.get(self.admin_user)[1]  # type: ignore[index]
            resp = client.submit_task(
                m.SubmitTaskReq(
                    group_name=self.admin_user,
                    timeout=timedelta(minutes=1),
                    task_spec=m.TaskSpec(args=["echo", DEMO_MESSAGE], terminal_output=True),
                )
            )
            self.log(f"submitted    echo task {resp.uuid}")
            done = client.wait_task(resp.uuid, timeout=timeout, poll=0.1)
            result = done.info.result
            status = result.exit_status if result is not None else -1
            url = client.artifact_download_url(resp.uuid, ArtifactContentType.std_log).url
            blob = httpx.get(url, timeout=30)
            blob.raise_for_status()
            with tarfile.open(fileobj=io.BytesIO(blob.content)) as tar:
                member = tar.extractfile("std-log/stdout.log")
                out = member.read().decode() if member else ""
        return status, out

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def wait_forever(self) -> None:
        while all(p.poll() is None for p in self.procs):
            time.sleep(0.5)
        dead = [p for p in self.procs if p.poll() is not None]
        raise UpError(
            f"a cluster process exited with status {dead[0].returncode}; see {self.data_dir / 'logs'}"
        )


def default_up_dir() -> Path:
    return CoordinatorSettings().data_dir


def credential_path_for_up() -> Path:
    return Path(os.environ.get("MITO_CREDENTIAL_PATH", str(default_credential_path())))
