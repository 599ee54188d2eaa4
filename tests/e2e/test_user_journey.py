"""The "done when" of issue 6: a new user, with only the README and ``--help``, logs in, submits a
sweep, watches it and downloads all its results in one command — through the real ``mito`` CLI
(subprocesses) against a coordinator process with a real ``mito worker`` running the tasks."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e.clientcli import client_argv, client_env
from tests.support.cluster import WorkerPool
from tests.support.coordinator import LiveCoordinator
from tests.support.databases import Names

pytestmark = pytest.mark.e2e


def test_login_sweep_watch_download(
    coord: LiveCoordinator, pool: WorkerPool, names: Names, tmp_path: Path
) -> None:
    user = names("newbie")
    coord.create_user(user, "s3cret")
    env = client_env(tmp_path)
    env["MITO_COORDINATOR_ADDR"] = coord.url  # as the README's configuration section says

    def mito(*args: str, rc: int = 0) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*client_argv(), *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert proc.returncode == rc, (
            f"{args}: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}\n{pool.logs()}"
        )
        assert "Traceback" not in proc.stderr
        return proc

    # --help is enough to find every step.
    assert "login" in mito("--help").stdout
    assert "--matrix" in mito("tasks", "submit", "--help").stdout
    assert "wait-many" in mito("tasks", "--help").stdout and "watch" in mito("tasks", "--help").stdout
    assert "--extract" in mito("tasks", "artifacts", "download-many", "--help").stdout

    assert f"Logged in as {user}" in mito("login", user, "s3cret").stdout
    assert mito("auth").stdout.strip() == user  # the stored token is used from now on
    pool.start_workers(coord, user, coord.login(user, "s3cret"))

    sweep = mito(
        "tasks", "submit", "--matrix", "x=1,2,3", "--matrix", "y=a,b", "-l", "sweep=j1", "-l", "x={x}",
        "--uuids-file", "uuids.txt", "--", "sh", "-c", 'echo {x}-{y} > "$MITO_RESULT_DIR/out.txt"',
    )  # fmt: skip
    uuids = (tmp_path / "uuids.txt").read_text().split()
    assert len(uuids) == 6 and "submitted 6 of 6" in sweep.stderr

    waited = mito("tasks", "wait-many", "-l", "sweep=j1", "--timeout", "120s", "--poll", "500ms")
    assert waited.stdout.strip() == "6 task(s) done: 6 exited 0, 0 failed, 0 cancelled"
    rows = json.loads(mito("tasks", "query", "-l", "sweep=j1", "--json").stdout)["tasks"]
    assert {r["state"] for r in rows} == {"Finished"}

    # The README's watch step: the sweep has ended, so the table is printed once and it returns.
    for args in (("tasks", "watch", "-l", "sweep=j1"), ("tasks", "watch", "-l", "sweep=j1", "--once")):
        board = mito(*args).stdout
        assert f"6 task(s) in group {user}: 6 ended" in board
        assert all(u in board for u in uuids) and board.count("exit 0") == 6
    records = [
        json.loads(line) for line in mito("tasks", "watch", "-l", "sweep=j1", "--json").stdout.splitlines()
    ]
    assert sorted(r["uuid"] for r in records) == sorted(uuids)
    assert {(r["state"], r["result"]["exit_status"]) for r in records} == {("Finished", 0)}

    mito("tasks", "artifacts", "download-many", "result", "-l", "sweep=j1", "-o", "results", "--extract")
    results = tmp_path / "results"
    assert sorted(p.name for p in results.iterdir()) == sorted(uuids)
    got = {(results / u / "result" / "out.txt").read_text().strip() for u in uuids}
    assert got == {f"{x}-{y}" for x in "123" for y in "ab"}

    # A sweep with a failing member: wait-many says so and exits 1.
    mito("tasks", "submit", "-m", "code=0,3", "-l", "sweep=j2", "--", "sh", "-c", "exit {code}")
    failed = mito("tasks", "wait-many", "-l", "sweep=j2", "--timeout", "120s", "--poll", "500ms", rc=1)
    assert "1 exited 0, 1 failed" in failed.stdout
    summary = json.loads(mito("tasks", "wait-many", "-l", "sweep=j2", "--json", rc=1).stdout)
    assert summary == {"total": 2, "succeeded": 1, "failed": 1, "cancelled": 0}
    assert mito("tasks", "wait-many", "-l", "no-such-label", rc=4).stderr.startswith("error: no task matches")
