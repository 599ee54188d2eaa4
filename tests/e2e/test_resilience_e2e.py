"""Failures with real processes (issue 3, DECISIONS S4), on SQLite and on PostgreSQL.

* a worker killed with SIGKILL mid-task: the coordinator notices the silent worker (heartbeat
  timeout), re-queues the task and another worker runs it to completion (at-least-once);
* the coordinator stopped (SIGTERM) and started again on the same database and data directory while
  workers are busy: every task ends Finished and none ran twice;
* a long-poll fetch whose client went away must not leave a task claimed by nobody.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.support.cluster import (
    WorkerPool,
    create_group,
    fast_coordinator,
    get_task,
    kill_processes_mentioning,
    setup_user,
    sh,
    submit,
    submit_many,
    wait_for,
    wait_task,
)
from tests.support.coordinator import LiveCoordinator, free_port
from tests.support.databases import Names

pytestmark = pytest.mark.e2e


def test_worker_killed_mid_task_is_requeued(
    coord: LiveCoordinator, pool: WorkerPool, tmp_path: Path, names: Names
) -> None:
    user, lab = names("alice"), names("lab")
    token, alice = setup_user(coord, user)
    create_group(alice, lab)
    [first] = pool.start_workers(coord, user, token, groups=[lab])
    runs = tmp_path / "runs.txt"
    marker = f"{random.randint(300, 899)}.{random.randint(10**8, 10**9 - 1)}"
    # The first run blocks on a long sleep; the second (after the flag exists) completes at once.
    flag = tmp_path / "first-run-seen"
    script = (
        f'echo "$MITO_TASK_UUID $$" >> {runs}; '
        f"if [ ! -e {flag} ]; then touch {flag}; sleep {marker}; fi; echo done > $MITO_RESULT_DIR/out"
    )
    uuid = submit(alice, lab, sh(script), timeout="5m")
    wait_for(flag.exists, 20, "the first run to start")
    info = get_task(alice, uuid)["info"]
    assert info["state"] == "Running"

    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(timeout=10)
    killed_at = time.monotonic()
    # The machine "died": its task processes go with it (they run in their own session).
    kill_processes_mentioning(marker)
    [second] = pool.start_workers(coord, user, token, groups=[lab])

    info = wait_task(alice, uuid, timeout=30, pool=pool)["info"]
    # Heartbeat timeout 4 s plus a reaper pass (and a worker start-up on a busy host).
    assert time.monotonic() - killed_at < 20
    assert info["state"] == "Finished"
    assert info["result"] == {"exit_status": 0, "msg": None}
    assert info["reporter_uuid"] == second.worker_uuid()
    lines = runs.read_text().splitlines()
    assert len(lines) == 2 and all(line.startswith(uuid) for line in lines)
    # The dead worker is gone for good.
    r = alice.get(f"/workers/{first.worker_uuid()}")
    assert r.status_code == 404, r.text
    alice.close()


def test_coordinator_restart_mid_run(db_url: str, pool: WorkerPool, tmp_path: Path) -> None:
    data_dir = tmp_path / "coord"
    port = free_port()
    runs = tmp_path / "runs.txt"
    total = 40
    with fast_coordinator(data_dir, db_url, heartbeat_timeout="20s", port=port) as coord:
        token, alice = setup_user(coord, "alice")
        create_group(alice, "lab")
        uuids = submit_many(alice, "lab", [sh(f'echo "$MITO_TASK_UUID" >> {runs}; sleep 0.2')] * total)
        pool.start_workers(coord, "alice", token, 3, groups=["lab"])
        wait_for(lambda: runs.exists() and len(runs.read_text().split()) >= 8, 30, "some tasks to run")
        proc = coord.extra["proc"]
        proc.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal after its graceful shutdown: killed by SIGTERM, promptly.
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        alice.close()
    done_before = len(runs.read_text().split())
    assert done_before < total, "the restart came too late to be mid-run"
    time.sleep(1.0)
    with fast_coordinator(data_dir, db_url, heartbeat_timeout="20s", port=port) as coord:
        alice = coord.client(coord.login("alice", "pw"))
        for uuid in uuids:
            info = wait_task(alice, uuid, timeout=60, pool=pool)["info"]
            assert info["state"] == "Finished", info
            assert info["result"] == {"exit_status": 0, "msg": None}
        lines = runs.read_text().split()
        assert sorted(lines) == sorted(uuids), "a task was lost or ran twice"
        r = alice.post("/tasks/query", json={"group_name": "lab", "count": True})
        assert r.json()["count"] == total
        for w in pool.workers:
            assert w.alive(), w.log_text()
        pool.close()
        alice.close()


def test_abandoned_long_poll_does_not_swallow_a_task(
    coord: LiveCoordinator, tmp_path: Path, names: Names
) -> None:
    """A fetch held by `?wait=` whose client disconnected must not claim a task for nobody."""
    user, lab = names("alice"), names("lab")
    _, alice = setup_user(coord, user)
    create_group(alice, lab)
    r = alice.post("/workers", json={"tags": [], "labels": [], "groups": [lab], "lifetime": None})
    assert r.status_code == 200, r.text
    headers = {"Authorization": f"Bearer {r.json()['token']}"}
    with httpx.Client(base_url=coord.url, headers=headers) as w:
        with pytest.raises(httpx.ReadTimeout):
            w.get("/workers/tasks", params={"wait": "5s"}, timeout=0.5)
        time.sleep(0.3)
        uuid = submit(alice, lab, sh("true"))
        time.sleep(1.0)
        info = get_task(alice, uuid)["info"]
        # Either never claimed, or released again once the coordinator saw nobody was listening.
        assert info["state"] == "Ready", info
        fetched = w.get("/workers/tasks")
        assert fetched.status_code == 200 and fetched.json()["uuid"] == uuid
    alice.close()
