"""Task chains with real processes (issue 3), on SQLite and on PostgreSQL.

* a task submits its downstream task through ``MITO_NEW_TASK``: the links are set both ways and the
  downstream task sees ``MITO_UPSTREAM_TASK_UUID``;
* DECISIONS S10: a downstream task left Pending by an execution that never committed is cancelled
  when the re-run of its upstream submits a new one (it is not left Pending forever);
* DECISIONS S18: ``watch`` works without Redis (the worker asks the coordinator).
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.support.cluster import (
    WorkerPool,
    create_group,
    get_task,
    setup_user,
    sh,
    submit,
    wait_for,
    wait_task,
)
from tests.support.coordinator import LiveCoordinator
from tests.support.databases import Names

pytestmark = pytest.mark.e2e


def new_task_file(path: Path, script: str, group: str) -> Path:
    """A SubmitTaskReq for MITO_NEW_TASK, with every field 0.6.8 requires."""
    body = {
        "group_name": group,
        "tags": [],
        "labels": ["downstream"],
        "timeout": "30s",
        "priority": 0,
        "task_spec": {"args": ["sh", "-c", script], "envs": {}, "resources": [], "terminal_output": False},
    }
    path.write_text(json.dumps(body))
    return path


def test_downstream_task_via_mito_new_task(
    coord: LiveCoordinator, pool: WorkerPool, tmp_path: Path, names: Names
) -> None:
    user, lab = names("alice"), names("lab")
    token, alice = setup_user(coord, user)
    create_group(alice, lab)
    seen = tmp_path / "upstream-seen"
    spec = new_task_file(tmp_path / "next.json", f'echo "$MITO_UPSTREAM_TASK_UUID" > {seen}', lab)
    pool.start_workers(coord, user, token, groups=[lab])
    up = submit(alice, lab, sh(f'cp {spec} "$MITO_NEW_TASK"'))
    up_info = wait_task(alice, up, pool=pool)["info"]
    assert up_info["state"] == "Finished" and up_info["result"] == {"exit_status": 0, "msg": None}
    down = up_info["downstream_task_uuid"]
    assert down is not None
    down_info = wait_task(alice, down, pool=pool)["info"]
    assert down_info["upstream_task_uuid"] == up
    assert down_info["state"] == "Finished" and down_info["result"] == {"exit_status": 0, "msg": None}
    assert down_info["creator_username"] == user and down_info["group_name"] == lab
    assert down_info["labels"] == ["downstream"]
    assert down_info["downstream_task_uuid"] is None
    assert seen.read_text().strip() == up
    alice.close()


def test_orphaned_pending_downstream_is_cancelled(
    coord: LiveCoordinator, pool: WorkerPool, tmp_path: Path, names: Names
) -> None:
    user, lab = names("alice"), names("lab")
    token, alice = setup_user(coord, user)
    create_group(alice, lab)
    seen = tmp_path / "upstream-seen"
    spec = new_task_file(tmp_path / "next.json", f'echo "$MITO_UPSTREAM_TASK_UUID" > {seen}', lab)
    up = submit(alice, lab, sh(f'cp {spec} "$MITO_NEW_TASK"'))

    # A first execution on a machine that dies between its downstream submission and its commit
    # (driven over the worker protocol: no process can be killed in that window on purpose).
    r = alice.post("/workers", json={"tags": [], "labels": [], "groups": [lab], "lifetime": None})
    assert r.status_code == 200, r.text
    headers = {"Authorization": f"Bearer {r.json()['token']}"}
    with httpx.Client(base_url=coord.url, headers=headers, timeout=30) as doomed:
        task = doomed.get("/workers/tasks").json()
        assert task["uuid"] == up
        assert doomed.post("/workers/tasks", json={"id": task["id"], "op": "Finish"}).status_code == 200
        submit_op = {"Submit": json.loads(spec.read_text())}
        assert doomed.post("/workers/tasks", json={"id": task["id"], "op": submit_op}).status_code == 200
    orphan = get_task(alice, up)["info"]["downstream_task_uuid"]
    assert orphan is not None
    orphan_info = get_task(alice, orphan)["info"]
    assert orphan_info["state"] == "Pending" and orphan_info["upstream_task_uuid"] == up

    # The silent worker is reaped, the upstream runs again on a real worker and submits afresh.
    [worker] = pool.start_workers(coord, user, token, groups=[lab])
    up_info = wait_task(alice, up, timeout=30, pool=pool)["info"]
    assert up_info["state"] == "Finished" and up_info["reporter_uuid"] == worker.worker_uuid()
    fresh = up_info["downstream_task_uuid"]
    assert fresh is not None and fresh != orphan
    orphan_info = get_task(alice, orphan)["info"]
    assert orphan_info["state"] == "Cancelled"
    assert orphan_info["result"] == {"exit_status": 0, "msg": "UserCancellation"}
    fresh_info = wait_task(alice, fresh, pool=pool)["info"]
    assert fresh_info["state"] == "Finished" and fresh_info["upstream_task_uuid"] == up
    assert seen.read_text().strip() == up
    pending = alice.post("/tasks/query", json={"group_name": lab, "states": ["Pending"]}).json()
    assert pending["tasks"] == []
    alice.close()


def test_watch_without_redis(coord: LiveCoordinator, pool: WorkerPool, tmp_path: Path, names: Names) -> None:
    user, lab = names("alice"), names("lab")
    token, alice = setup_user(coord, user)
    create_group(alice, lab)
    pool.start_workers(coord, user, token, 3, groups=[lab])
    started = tmp_path / "watched-started"
    watched_end = tmp_path / "watched-end"
    watched = submit(alice, lab, sh(f"touch {started}; sleep 2; date +%s.%N > {watched_end}"))
    wait_for(started.exists, 20, "the watched task to start")
    stamps = {state: tmp_path / f"{state}-start" for state in ("ExecSpawned", "TaskCommitted")}
    watchers = {
        state: submit(alice, lab, sh(f"date +%s.%N > {stamp}"), watch=[watched, state])
        for state, stamp in stamps.items()
    }
    # Both watchers were taken by idle workers and wait (Running) while the watched task runs.
    for uuid in watchers.values():
        wait_task(alice, uuid, timeout=10, until=lambda info: info["state"] == "Running", pool=pool)
    assert not any(stamp.exists() for stamp in stamps.values())
    for uuid in watchers.values():
        info = wait_task(alice, uuid, timeout=30, pool=pool)["info"]
        assert info["state"] == "Finished" and info["result"] == {"exit_status": 0, "msg": None}
        assert info["spec"]["watch"] == [watched, info["spec"]["watch"][1]]
    end = float(watched_end.read_text())
    for stamp in stamps.values():
        assert float(stamp.read_text()) >= end, f"{stamp.name} ran before the watched task ended"
    assert get_task(alice, watched)["info"]["state"] == "Finished"
    alice.close()
