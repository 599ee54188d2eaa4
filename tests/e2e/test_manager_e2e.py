"""``mito manager spawn|status|kill`` as a user runs it, against a live coordinator (behavior.md §6.14).

The manager records the workers it spawns (pid and start time, in the user cache dir) and acts on
those alone, where 0.6.8 ran ``pkill -f "mito worker"``. So the main test keeps a ``mito worker``
started by hand (its command line does contain ``mito worker``) running next to the spawned ones and
checks that ``kill`` leaves it alone, while the spawned ones stop gracefully: they unregister from
the coordinator, whose heartbeat timeout (the default 10 min) is far longer than the test, so a
worker leaves the registry here only by unregistering.

Every ``mito`` run gets HOME and the XDG directories in the test's tmp_path, so the pid file, the
credential file and the worker logs never touch the real user's.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from mitosis.manager import load_records
from tests.support import databases
from tests.support.cluster import kill_processes_mentioning, setup_user, user_env, wait_for
from tests.support.coordinator import LiveCoordinator, coordinator_process
from tests.support.databases import Names

pytestmark = pytest.mark.e2e

MITO = str(Path(sys.executable).with_name("mito"))
_REGISTERED = re.compile(r"worker ([0-9a-f-]{36}) registered")
# One row of the status table: "│ 12345 │ alive │ -m mitosis.cli.worker ... │".
_STATUS_ROW = re.compile(r"^\W*(\d+)\s*\W\s*(alive|dead)\s*\W", re.MULTILINE)


@pytest.fixture(scope="module")
def coordinator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveCoordinator]:
    """A `mito coordinator` on SQLite with the default heartbeat timeout (nothing is reaped here)."""
    tmp = tmp_path_factory.mktemp("manager-coord")
    with coordinator_process(tmp / "coord", databases.sqlite_url(tmp)) as coord:
        yield coord


def wide_user_env(home: Path) -> dict[str, str]:
    """A user's environment (``user_env``) with one table row per line, however long the rows."""
    return user_env(home, COLUMNS="400")


def mito(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MITO, *args], env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def gone(pid: int) -> bool:
    """The process has exited (a zombie not yet reaped by whoever inherited it counts as exited)."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def registered_workers(client: httpx.Client) -> set[str]:
    """The uuids of the workers serving the caller's own group."""
    r = client.post("/workers/query", json={})
    assert r.status_code == 200, r.text
    return {str(w["worker_id"]) for w in r.json()["workers"]}


def logged_uuids(log_dir: Path) -> set[str]:
    """The uuids the workers logging (``--file-log``) into ``log_dir`` registered as."""
    found = set()
    for path in log_dir.glob("*.log"):
        found |= set(_REGISTERED.findall(path.read_text(errors="replace")))
    return found


def test_spawn_status_kill_touches_only_its_own_workers(
    coordinator: LiveCoordinator, tmp_path: Path, names: Names
) -> None:
    user, password = names("manager"), "manager-secret-pw"
    token, client = setup_user(coordinator, user, password)
    cred = tmp_path / "credentials"
    cred.write_text(f"{user}:{token}")
    env = wide_user_env(tmp_path / "home")
    worker_logs = tmp_path / "home" / "cache" / "mitosis" / "worker"

    # A worker of the same user started by hand, outside the manager, from its own home.
    outside_env = wide_user_env(tmp_path / "outside")
    outside_log = tmp_path / "outside" / "worker.log"
    outside_argv = [MITO, "worker", "-c", coordinator.url, "--credential-path", str(cred), "-u", user]
    outside_argv += ["--heartbeat-interval", "2s", "--long-poll", "5s", "--skip-redis"]
    with outside_log.open("ab") as out:
        outside = subprocess.Popen(
            outside_argv, env=outside_env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    try:

        def outside_registered() -> str | None:
            assert outside.poll() is None, outside_log.read_text(errors="replace")
            found = _REGISTERED.search(outside_log.read_text(errors="replace"))
            return found.group(1) if found else None

        outside_uuid = wait_for(outside_registered, 30, "the outside worker to register")
        assert "mito worker" in " ".join(psutil.Process(outside.pid).cmdline())

        spawned = mito(
            env,
            *("manager", "spawn", "2", "-c", coordinator.url, "--credential-path", str(cred)),
            *("-u", user, "-p", password, "--heartbeat-interval", "2s", "--long-poll", "5s"),
            *("--skip-redis", "--file-log"),
        )
        assert spawned.returncode == 0, spawned.stdout + spawned.stderr
        assert "Current worker numbers: 2" in spawned.stdout, spawned.stdout

        status = mito(env, "manager", "status")
        assert status.returncode == 0, status.stdout + status.stderr
        rows = _STATUS_ROW.findall(status.stdout)
        assert len(rows) == 2 and all(state == "alive" for _, state in rows), status.stdout
        assert "Total: 2" in status.stdout, status.stdout
        assert password not in status.stdout and "***" in status.stdout, status.stdout
        pids = [int(pid) for pid, _ in rows]
        assert outside.pid not in pids
        for pid in pids:
            cmdline = psutil.Process(pid).cmdline()
            assert "mitosis.cli.worker" in cmdline and coordinator.url in cmdline, cmdline

        # The two spawned workers registered with the coordinator, next to the outside one.
        def both_registered() -> set[str] | None:
            mine = logged_uuids(worker_logs)
            return mine if len(mine) == 2 else None

        try:
            mine = wait_for(both_registered, 30, "the spawned workers to register")
        except TimeoutError:
            raise AssertionError(
                f"spawned workers did not register; logs: {logged_uuids(worker_logs)}"
            ) from None
        assert outside_uuid not in mine
        assert registered_workers(client) == {*mine, outside_uuid}

        killed = mito(env, "manager", "kill")
        assert killed.returncode == 0, killed.stdout + killed.stderr
        assert "Sent SIGTERM to 2 worker(s)" in killed.stdout, killed.stdout
        wait_for(lambda: all(gone(pid) for pid in pids), 30, f"spawned workers {pids} to exit")
        # Graceful: each unregistered on its way out. The outside worker runs on, still registered.
        wait_for(lambda: not mine & registered_workers(client), 15, "the spawned workers to unregister")
        for uuid in mine:
            assert client.get(f"/workers/{uuid}").status_code == 404
        assert outside.poll() is None, outside_log.read_text(errors="replace")
        assert registered_workers(client) == {outside_uuid}

        status = mito(env, "manager", "status")
        assert status.returncode == 0 and "Total: 0" in status.stdout, status.stdout + status.stderr
        assert not _STATUS_ROW.findall(status.stdout), status.stdout
        again = mito(env, "manager", "kill")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "No worker spawned by this manager is running" in again.stdout, again.stdout
        assert outside.poll() is None
    finally:
        client.close()
        if outside.poll() is None:
            outside.send_signal(signal.SIGTERM)
            try:
                outside.wait(timeout=15)
            except subprocess.TimeoutExpired:
                outside.kill()
                outside.wait(timeout=10)
        kill_processes_mentioning(str(tmp_path))


def test_nothing_to_kill_and_nothing_to_spawn(tmp_path: Path) -> None:
    """With nothing spawned: clear messages and the 0.6.8 exit codes, no process started, no traceback."""
    env = wide_user_env(tmp_path / "home")
    pid_file = tmp_path / "home" / "cache" / "mitosis" / "manager" / "workers.json"

    killed = mito(env, "manager", "kill")
    assert killed.returncode == 0, killed.stdout + killed.stderr
    assert killed.stdout.strip() == "No worker spawned by this manager is running"

    zero = mito(env, "manager", "spawn", "0", "-c", "http://127.0.0.1:9")
    assert zero.returncode == 0, zero.stdout + zero.stderr
    assert "warning: COUNT is 0, no worker spawned" in zero.stdout, zero.stdout
    assert "Current worker numbers" not in zero.stdout
    assert load_records(pid_file) == []

    negative = mito(env, "manager", "spawn", "--", "-1")
    assert negative.returncode == 2, negative.stdout + negative.stderr
    assert "Invalid value for 'COUNT': -1 is not in the range x>=0" in negative.stderr, negative.stderr
    assert load_records(pid_file) == []

    status = mito(env, "manager", "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert status.stdout.strip() == "Total: 0"
    for run in (killed, zero, negative, status):
        assert "Traceback" not in run.stdout + run.stderr
