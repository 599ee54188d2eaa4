"""The worker's batched protocol with real processes, on SQLite and PostgreSQL.

* many short tasks on several workers: each runs exactly once, with the results of single tasks;
* a long task after short ones gives back what its worker claimed ahead, so an idle worker runs
  those instead of waiting behind it;
* ``--no-batch`` speaks only the 0.6.8 protocol and still runs everything.
"""

from __future__ import annotations

import collections
import time
from pathlib import Path

import pytest

from tests.support.cluster import (
    WorkerPool,
    count_tasks,
    create_group,
    get_task,
    query_tasks,
    setup_user,
    sh,
    submit,
    submit_many,
    wait_for,
    wait_task,
)
from tests.support.coordinator import LiveCoordinator
from tests.support.databases import Names
from tests.support.sse import SseReader

pytestmark = pytest.mark.e2e


def _ran(path: Path) -> collections.Counter[str]:
    return collections.Counter(path.read_text().split()) if path.exists() else collections.Counter()


def test_short_tasks_on_batching_workers_run_exactly_once(
    coord: LiveCoordinator, pool: WorkerPool, names: Names, tmp_path: Path
) -> None:
    user, lab = names("bw"), names("bwlab")
    token, alice = setup_user(coord, user)
    create_group(alice, lab)
    pool.start_workers(coord, user, token, 3, groups=[lab])
    ran = tmp_path / "ran.txt"
    body = sh(
        f'echo "$MITO_TASK_UUID" >> {ran}; [ -d "$MITO_RESULT_DIR" ] && [ -z "$(ls -A "$MITO_RESULT_DIR")" ]'
    )
    uuids = submit_many(alice, lab, [body] * 300)
    wait_for(lambda: count_tasks(alice, group_name=lab, states=["Finished"], exit_status="0") == 300, 120,
             "300 tasks committed", interval=0.5)  # fmt: skip
    runs = _ran(ran)
    assert set(runs) == set(uuids) and set(runs.values()) == {1}, pool.logs()
    # Every task reports like a single one: its worker, its result, no artifact.
    sample = get_task(alice, uuids[123])
    assert sample["info"]["result"] == {"exit_status": 0, "msg": None}
    assert sample["info"]["reporter_uuid"] is not None and sample["artifacts"] == []
    reporters = {t["reporter_uuid"] for t in query_tasks(alice, group_name=lab, limit=300)}
    assert len(reporters) >= 2  # the work was shared
    assert "batched protocol" in pool.workers[0].log_text()


def test_a_long_task_hands_what_its_worker_claimed_ahead_to_an_idle_one(
    coord: LiveCoordinator, pool: WorkerPool, names: Names, tmp_path: Path
) -> None:
    user, lab = names("bl"), names("bllab")
    token, alice = setup_user(coord, user)
    create_group(alice, lab)
    [first] = pool.start_workers(coord, user, token, 1, groups=[lab], extra=["--prefetch", "16"])
    # Short tasks teach the worker to claim ahead; then one long task comes with more short ones.
    warm = submit_many(alice, lab, [sh("true")] * 5)
    for uuid in warm:
        wait_task(alice, uuid, 60, pool=pool)
    # One submission: the idle worker's long-poll claims the long task and the ten behind it.
    spec = {"group_name": lab, "timeout": "60s", "task_spec": {"args": sh("true")}}
    long_spec = {**spec, "priority": 5, "task_spec": {"args": sh("sleep 6")}}
    r = alice.post("/tasks/submit", json={"tasks": [long_spec] + [spec] * 10})
    assert r.status_code == 200, r.text
    long_task, *after = [res["Ok"]["uuid"] for res in r.json()["results"]]
    wait_for(lambda: get_task(alice, long_task)["info"]["state"] == "Running", 30, "the long task to start")
    [second] = pool.start_workers(coord, user, token, 1, groups=[lab])
    t0 = time.monotonic()
    for uuid in after:
        wait_task(alice, uuid, 30, pool=pool)
    waited = time.monotonic() - t0
    assert waited < 5.5, f"the short tasks waited {waited:.1f} s behind the long one\n{pool.logs()}"
    assert get_task(alice, long_task)["info"]["state"] == "Running"
    ran_by = {get_task(alice, u)["info"]["reporter_uuid"] for u in after}
    assert ran_by == {second.worker_uuid()}, pool.logs()
    # They had been claimed by the first worker, and given back unstarted.
    with SseReader(coord.url, token, params={"task": after[0], "last_event_id": 0}) as sse:
        sse.wait_connected()
        states = [
            (m.data["state"], m.data["worker"], (m.data["data"] or {}).get("requeued")) for m in sse.replay()
        ]
    assert [s for s, _, _ in states][:3] == ["Ready", "Running", "Ready"], states
    assert states[2][2] is True
    wait_task(alice, long_task, 30, pool=pool)
    assert first.alive()


def test_no_batch_worker_uses_the_0_6_8_protocol(
    coord: LiveCoordinator, pool: WorkerPool, names: Names, tmp_path: Path
) -> None:
    user, lab = names("nb"), names("nblab")
    token, alice = setup_user(coord, user)
    create_group(alice, lab)
    [worker] = pool.start_workers(coord, user, token, 1, groups=[lab], extra=["--no-batch"])
    uuids = [submit(alice, lab, sh(f"exit {i}")) for i in range(3)]
    results = [wait_task(alice, u, 60, pool=pool)["info"]["result"] for u in uuids]
    assert [r["exit_status"] for r in results] == [0, 256, 512]
    assert "per-task protocol" in worker.log_text()
