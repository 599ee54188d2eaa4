"""Scheduling with real processes (issue 3): a `mito coordinator` process, `mito worker` processes and
real shell commands, on SQLite and on PostgreSQL.

Covers the tag/group matching table (DECISIONS D1, A2), priority order, the worker-side timeout
(the whole process group dies), and cancellation of waiting and running tasks (DECISIONS S5).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.cluster import (
    WorkerPool,
    create_group,
    get_task,
    processes_mentioning,
    setup_user,
    sh,
    submit,
    wait_for,
    wait_task,
)
from tests.support.coordinator import LiveCoordinator
from tests.support.databases import Names

pytestmark = pytest.mark.e2e


def sleeper_marker() -> str:
    """A `sleep` duration unique to this test: found again in the grandchild's command line."""
    return f"{random.randint(300, 899)}.{random.randint(10**8, 10**9 - 1)}"


def test_tag_and_group_matching(coord: LiveCoordinator, pool: WorkerPool, names: Names) -> None:
    a, b, lab, elsewhere = names("alice"), names("bob"), names("lab"), names("elsewhere")
    alice_token, alice = setup_user(coord, a)
    bob_token, bob = setup_user(coord, b)
    _, carol = setup_user(coord, names("carol"))
    create_group(alice, lab, {b: "Read"})
    create_group(carol, elsewhere)

    # A2: bob only reads `lab`, so he may not lend a worker to it, neither by API nor with `mito worker`.
    r = bob.post("/workers", json={"tags": [], "labels": [], "groups": [lab], "lifetime": None})
    assert r.status_code == 403, r.text
    assert f"group {lab}" in r.json()["msg"] and "Write" in r.json()["msg"]
    refused = pool.spawn(coord, b, bob_token, groups=[lab])
    assert refused.proc.wait(timeout=30) == 1
    assert f"group {lab}" in refused.log_text() and "Write" in refused.log_text()

    plain, gpu, gpu_big = (
        pool.spawn(coord, a, alice_token, groups=[lab], tags=tags) for tags in ([], ["gpu"], ["gpu", "big"])
    )
    reader = pool.spawn(coord, a, alice_token, groups=[f"{lab}:read"], tags=["gpu", "big"])
    pool.wait_registered([plain, gpu, gpu_big, reader])
    name_of = {w.worker_uuid(): name for w, name in ((plain, "plain"), (gpu, "gpu"), (gpu_big, "gpu_big"))}
    r = alice.get(f"/workers/{reader.worker_uuid()}")
    assert r.status_code == 200, r.text
    assert r.json()["groups"] == {lab: "Read", a: "Admin"}
    assert r.json()["info"]["tags"] == ["big", "gpu"] or set(r.json()["info"]["tags"]) == {"gpu", "big"}

    # Which workers may run a task with these tags: task tags must be a subset of the worker's tags,
    # and a Read role never receives tasks.
    allowed = {(): {"plain", "gpu", "gpu_big"}, ("gpu",): {"gpu", "gpu_big"}, ("big", "gpu"): {"gpu_big"}}
    submitted: dict[str, tuple[str, ...]] = {}
    for _ in range(4):
        for tags in allowed:
            submitted[submit(alice, lab, sh("sleep 0.2"), tags=tags)] = tags
    never = [
        submit(alice, lab, sh("true"), tags=["cpu"]),  # no worker has `cpu`
        submit(alice, lab, sh("true"), tags=["gpu", "big", "huge"]),  # a superset of every worker's tags
        submit(carol, elsewhere, sh("true")),  # a group no worker serves
    ]
    ran_by: dict[tuple[str, ...], set[str]] = {tags: set() for tags in allowed}
    for uuid, tags in submitted.items():
        info = wait_task(alice, uuid, pool=pool)["info"]
        assert info["state"] == "Finished" and info["result"] == {"exit_status": 0, "msg": None}
        assert set(info["tags"]) == set(tags)
        runner = name_of.get(info["reporter_uuid"])
        assert runner in allowed[tags], f"task tagged {tags} ran on {runner}"
        ran_by[tags].add(runner)
    # Only gpu_big can take the (gpu, big) tasks; untagged `plain` served only untagged tasks.
    assert ran_by[("big", "gpu")] == {"gpu_big"}
    assert "runner: task" not in reader.log_text()
    time.sleep(1.0)
    for uuid, client in zip(never, (alice, alice, carol), strict=True):
        info = get_task(client, uuid)["info"]
        assert info["state"] == "Ready" and info["result"] is None and info["reporter_uuid"] is None

    # A worker carrying `cpu` now picks up the task that waited for it.
    pool.start_workers(coord, a, alice_token, groups=[lab], tags=["cpu"])
    assert wait_task(alice, never[0], pool=pool)["info"]["state"] == "Finished"
    assert get_task(alice, never[1])["info"]["state"] == "Ready"
    for c in (alice, bob, carol):
        c.close()


def test_priority_order_with_one_worker(
    coord: LiveCoordinator, pool: WorkerPool, tmp_path: Path, names: Names
) -> None:
    user, lab = names("alice"), names("lab")
    token, alice = setup_user(coord, user)
    create_group(alice, lab)
    order_file = tmp_path / "order.txt"
    plan = [("a", 0), ("b", 5), ("c", 0), ("d", 10), ("e", 5), ("f", -3), ("g", 10), ("h", 0)]
    uuids = [submit(alice, lab, sh(f"echo {name} >> {order_file}"), priority=p) for name, p in plan]
    pool.start_workers(coord, user, token, groups=[lab])
    for uuid in uuids:
        wait_task(alice, uuid, pool=pool)
    # Higher priority first; equal priorities in submission order.
    assert order_file.read_text().split() == ["d", "g", "b", "e", "a", "c", "h", "f"]
    alice.close()


def test_timeout_kills_the_process_group(
    coord: LiveCoordinator, pool: WorkerPool, tmp_path: Path, names: Names
) -> None:
    user, lab = names("alice"), names("lab")
    token, alice = setup_user(coord, user)
    create_group(alice, lab)
    pool.start_workers(coord, user, token, groups=[lab])
    marker = sleeper_marker()
    started = tmp_path / "started"
    uuid = submit(alice, lab, sh(f"sleep {marker} & touch {started}; wait"), timeout="2s")
    wait_for(started.exists, 20, "the task to start")
    assert any(p.name() == "sleep" for p in processes_mentioning(marker)), "the grandchild is not running"
    t0 = time.monotonic()
    info = wait_task(alice, uuid, pool=pool)["info"]
    assert time.monotonic() - t0 < 10
    assert info["state"] == "Cancelled"
    assert info["result"]["msg"] == "ExecTimeout"
    assert info["result"]["exit_status"] in (9, 15)  # raw wait status: killed by SIGKILL or SIGTERM
    wait_for(lambda: not processes_mentioning(marker), 5, "the sleeper grandchild to be gone")
    alice.close()


def test_cancel_waiting_task(coord: LiveCoordinator, pool: WorkerPool, names: Names) -> None:
    user, lab = names("alice"), names("lab")
    token, alice = setup_user(coord, user)
    create_group(alice, lab)
    pool.start_workers(coord, user, token, groups=[lab])
    uuid = submit(alice, lab, sh("true"), tags=["nobody-has-this"])
    assert get_task(alice, uuid)["info"]["state"] == "Ready"
    r = alice.delete(f"/tasks/{uuid}")
    assert r.status_code == 200, r.text
    info = get_task(alice, uuid)["info"]
    assert info["state"] == "Cancelled"
    assert info["result"] == {"exit_status": 0, "msg": "UserCancellation"}
    assert info["reporter_uuid"] is None
    archived = alice.post("/tasks/query", json={"group_name": lab, "states": ["Cancelled"]}).json()
    assert [t["uuid"] for t in archived["tasks"]] == [uuid]
    # Cancelled is final: a second cancel is refused and the task stays as it is.
    assert alice.delete(f"/tasks/{uuid}").status_code in (400, 404, 409)
    assert get_task(alice, uuid)["info"]["result"]["msg"] == "UserCancellation"
    alice.close()


def test_cancel_running_task(coord: LiveCoordinator, pool: WorkerPool, tmp_path: Path, names: Names) -> None:
    user, lab = names("alice"), names("lab")
    token, alice = setup_user(coord, user)
    create_group(alice, lab)
    [worker] = pool.start_workers(coord, user, token, groups=[lab])
    marker = sleeper_marker()
    started = tmp_path / "started"
    uuid = submit(alice, lab, sh(f"sleep {marker} & touch {started}; wait"), timeout="5m")
    wait_for(started.exists, 20, "the task to start")
    assert get_task(alice, uuid)["info"]["state"] == "Running"
    sleepers = [p for p in processes_mentioning(marker) if p.name() == "sleep"]
    assert sleepers
    t0 = time.monotonic()
    r = alice.delete(f"/tasks/{uuid}")
    assert r.status_code == 200, r.text
    # S5: the worker kills the whole process group within about a second.
    wait_for(lambda: not processes_mentioning(marker), 3, "the task's process group to be killed")
    assert time.monotonic() - t0 < 3
    assert not any(psutil.pid_exists(p.pid) and p.status() != psutil.STATUS_ZOMBIE for p in sleepers)
    info = wait_task(alice, uuid, timeout=10, pool=pool)["info"]
    assert info["state"] == "Cancelled"
    assert info["result"]["msg"] == "UserCancellation"
    assert info["reporter_uuid"] == worker.worker_uuid()
    assert worker.alive()
    # The worker carries on with the next task.
    nxt = submit(alice, lab, sh("true"))
    assert wait_task(alice, nxt, pool=pool)["info"]["result"] == {"exit_status": 0, "msg": None}
    alice.close()


def test_read_role_worker_gets_nothing_over_http(coord: LiveCoordinator, names: Names) -> None:
    """The raw protocol: a worker with Read on a group is answered `null`, even holding every tag."""
    user, lab = names("alice"), names("lab")
    _, alice = setup_user(coord, user)
    create_group(alice, lab)
    r = alice.post(
        "/workers", json={"tags": ["x"], "labels": [], "groups": [f"{lab}:read"], "lifetime": None}
    )
    assert r.status_code == 200, r.text
    wtoken = r.json()["token"]
    submit(alice, lab, sh("true"))
    with httpx.Client(base_url=coord.url, headers={"Authorization": f"Bearer {wtoken}"}) as w:
        fetched = w.get("/workers/tasks")
        assert fetched.status_code == 200 and fetched.json() is None
    alice.close()
