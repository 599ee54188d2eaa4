"""The issue's must-have race test: two coordinator processes on one PostgreSQL database, workers
split across them, thousands of tasks; every task runs exactly once and ends Finished.

Each task appends its own uuid to one shared file (``O_APPEND`` writes of a short line are atomic),
so a task handed to two workers shows up twice and a lost one not at all. Half the tasks are
submitted before the workers start (they race for the backlog), half while they run (the long-poll
wake-ups race, in-process and across coordinators through LISTEN/NOTIFY).
"""

from __future__ import annotations

import collections
import os
import time
from pathlib import Path

import pytest

from tests.support.cluster import (
    count_tasks,
    create_group,
    fast_coordinator,
    setup_user,
    submit_many,
    wait_for,
    worker_pool,
)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

# The issue asks for thousands; E2E_RACE_TASKS only shrinks it for a quick local run.
TASKS = int(os.environ.get("E2E_RACE_TASKS", "2000"))
WORKERS_PER_COORDINATOR = 4


def test_two_coordinators_never_run_a_task_twice(pg_url: str, tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    command = ["sh", "-c", f'echo "$MITO_TASK_UUID" >> {runs}']
    data = tmp_path / "coord"
    with (
        # Replicas share the signing keys and the blob directory: one data directory, two processes.
        fast_coordinator(data, pg_url, heartbeat_timeout="60s", log=tmp_path / "c1.log") as c1,
        fast_coordinator(data, pg_url, heartbeat_timeout="60s", log=tmp_path / "c2.log") as c2,
        worker_pool(tmp_path / "workers") as pool,
    ):
        token, alice = setup_user(c1, "alice")
        create_group(alice, "lab")
        c2_alice = c2.client(token)
        uuids = submit_many(alice, "lab", [command] * (TASKS // 2))
        t0 = time.monotonic()
        for c in (c1, c2):
            for _ in range(WORKERS_PER_COORDINATOR):
                pool.spawn(c, "alice", token, groups=["lab"], heartbeat_interval="5s")
        pool.wait_registered(pool.workers, timeout=60)
        uuids += submit_many(c2_alice, "lab", [command] * (TASKS // 2), chunk=100)

        def all_finished() -> bool:
            return count_tasks(alice, group_name="lab", states=["Finished"]) == TASKS

        try:
            # About 40 s on an idle 2-core machine; the bound leaves room for a loaded CI host.
            wait_for(all_finished, 200, f"{TASKS} tasks to finish", interval=0.5)
        except TimeoutError:
            states = {
                s: count_tasks(alice, group_name="lab", states=[s]) for s in ("Ready", "Running", "Finished")
            }
            raise AssertionError(f"not all tasks finished: {states}\n{pool.logs()}") from None
        elapsed = time.monotonic() - t0

        lines = runs.read_text().split()
        counts = collections.Counter(lines)
        twice = [u for u, n in counts.items() if n > 1]
        assert not twice, f"{len(twice)} tasks ran more than once, e.g. {twice[:3]}"
        assert set(lines) == set(uuids) and len(lines) == TASKS
        # Every task committed with exit 0 by one of the workers, and the workers of both
        # coordinators took part.
        reporters: collections.Counter[str] = collections.Counter()
        offset = 0
        while True:
            r = alice.post(
                "/tasks/query",
                json={"group_name": "lab", "limit": 1000, "offset": offset, "states": ["Finished"]},
            )
            page = r.json()["tasks"]
            if not page:
                break
            for t in page:
                assert t["result"] == {"exit_status": 0, "msg": None}
                reporters[t["reporter_uuid"]] += 1
            offset += len(page)
        assert sum(reporters.values()) == TASKS
        by_coordinator = collections.Counter()
        worker_coord = {w.worker_uuid(): w.coordinator.url for w in pool.workers}
        for reporter, n in reporters.items():
            by_coordinator[worker_coord[reporter]] += n
        assert set(by_coordinator) == {c1.url, c2.url}, by_coordinator
        print(f"{TASKS} tasks on {len(pool.workers)} workers and 2 coordinators in {elapsed:.1f}s")
        alice.close()
        c2_alice.close()
