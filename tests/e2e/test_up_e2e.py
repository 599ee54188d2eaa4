"""``mito up --once``, the README's first quick-start command, run as a user would run it.

It starts a coordinator and a worker on the embedded defaults (SQLite, local blobs), runs the demo
``echo`` task and prints what it printed, then stops everything. HOME and the XDG directories are
in the test's tmp_path, so the credential file and worker directories never touch the real user's.
A second run on the same data directory must re-use its keys, bootstrap admin password and database.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.cluster import kill_processes_mentioning, processes_mentioning, user_env
from tests.support.coordinator import free_port

pytestmark = pytest.mark.e2e

MITO = str(Path(sys.executable).with_name("mito"))
DEMO_OUTPUT = "hello from a Mitosis task"  # what `echo` prints in the demo task (mitosis.up)
_SUBMITTED = re.compile(r"submitted\s+echo task ([0-9a-f-]{36})")


def up_once(env: dict[str, str], bind: str, data_dir: Path) -> str:
    """Run ``mito up --once``; return its stdout once it has exited 0 with the demo's output."""
    run = subprocess.run(
        [MITO, "up", "--once", "--bind", bind, "--data-dir", str(data_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    logs = "".join(
        f"\n----- {p.name} -----\n{p.read_text(errors='replace')[-3000:]}"
        for p in sorted((data_dir / "logs").glob("*.log"))
    )
    assert run.returncode == 0, f"exit {run.returncode}\n{run.stdout}\n{run.stderr}{logs}"
    assert f"task output  {DEMO_OUTPUT}\n" in run.stdout, run.stdout + logs
    assert "the demo task ran end to end." in run.stdout, run.stdout
    assert "Traceback" not in run.stdout + run.stderr
    return run.stdout


def submitted_uuid(out: str) -> str:
    """The demo task's uuid as ``mito up`` printed it, without dashes (as SQLite stores it)."""
    found = _SUBMITTED.search(out)
    assert found, out
    return found.group(1).replace("-", "")


def assert_cluster_stopped(bind: str, data_dir: Path) -> None:
    """`--once` left nothing running: no coordinator or worker process, nothing on the port."""
    left = processes_mentioning(str(data_dir)) + processes_mentioning(f"http://{bind}")
    assert not left, [p.cmdline() for p in left]
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://{bind}/health", timeout=2)


def test_up_once_runs_the_demo_task_and_again_on_the_same_data_dir(tmp_path: Path) -> None:
    """README quick start, command 1: `mito up --once` prints the demo task's output and exits 0."""
    env = user_env(tmp_path / "home")
    data_dir = tmp_path / "up-data"
    bind = f"127.0.0.1:{free_port()}"
    credentials = tmp_path / "home" / "config" / "mitosis" / "credentials"
    try:
        first = up_once(env, bind, data_dir)
        assert_cluster_stopped(bind, data_dir)
        # What the README promises next: an admin token for `mito client` in the credential file.
        assert credentials.read_text().startswith("mitosis_admin:"), credentials.read_text()
        keys = {p.name: p.read_bytes() for p in (data_dir / "keys").iterdir()}
        assert {"private.pem", "public.pem", "admin-password"} <= set(keys)

        second = up_once(env, bind, data_dir)
        assert_cluster_stopped(bind, data_dir)
        # Same keys and admin password: the coordinator started on what the first run created.
        assert {p.name: p.read_bytes() for p in (data_dir / "keys").iterdir()} == keys
        # Same database: it holds both demo tasks.
        uuids = {submitted_uuid(first), submitted_uuid(second)}
        assert len(uuids) == 2
        with sqlite3.connect(data_dir / "mitosis.db") as db:
            stored = {
                row[0].replace("-", "")
                for table in ("active_tasks", "archived_tasks")
                for row in db.execute(f"SELECT uuid FROM {table}")
            }
        assert uuids <= stored, stored
    finally:
        kill_processes_mentioning(str(tmp_path))
