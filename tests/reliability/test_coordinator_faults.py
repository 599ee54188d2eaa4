"""Faults of the coordinator and of what it depends on, with real processes (issue 8).

* the coordinator SIGKILLed in the middle of a burst of submissions while workers run tasks;
* its PostgreSQL server (a private cluster) restarted while tasks run.

Every task appends its own uuid to a file, so "ran twice" and "never ran" are counted, not guessed.
"""

from __future__ import annotations

import collections
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.reliability.services import private_postgres
from tests.support.cluster import (
    WorkerPool,
    create_group,
    fast_coordinator,
    get_task,
    setup_user,
    sh,
    submit,
    wait_for,
)
from tests.support.coordinator import free_port

pytestmark = pytest.mark.e2e

TERMINAL = {"Finished", "Cancelled"}


def _task_body(ran: Path, seconds: float = 0.1) -> dict[str, object]:
    return {
        "group_name": "lab",
        "tags": [],
        "labels": [],
        "timeout": "60s",
        "priority": 0,
        "task_spec": {"args": sh(f'echo "$MITO_TASK_UUID" >> {ran}; sleep {seconds}')},
    }


def _runs(ran: Path) -> collections.Counter[str]:
    return collections.Counter(ran.read_text().split()) if ran.exists() else collections.Counter()


def _wait_all_committed(client: httpx.Client, uuids: list[str], timeout: float, pool: WorkerPool) -> None:
    pending = set(uuids)

    def done() -> bool:
        for uuid in list(pending):
            try:
                info = get_task(client, uuid)["info"]
            except (httpx.HTTPError, AssertionError):
                return False
            if info["state"] in TERMINAL and info["result"] is not None:
                pending.discard(uuid)
        return not pending

    try:
        wait_for(done, timeout, f"{len(pending)} tasks to be committed", interval=0.3)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}: still pending {sorted(pending)[:5]}\n{pool.logs()}") from None


class Burst(threading.Thread):
    """Submits tasks one by one as fast as the coordinator answers; remembers which got a 2xx."""

    def __init__(self, url: str, token: str, ran: Path, total: int) -> None:
        super().__init__(daemon=True)
        self.url, self.token, self.ran, self.total = url, token, ran, total
        self.accepted: list[str] = []
        self.refused = 0
        self.errors = 0

    def run(self) -> None:
        with httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=5
        ) as client:
            while len(self.accepted) < self.total:
                try:
                    r = client.post("/tasks", json=_task_body(self.ran))
                except httpx.HTTPError:
                    self.errors += 1
                    time.sleep(0.05)
                    continue
                if r.is_success:
                    self.accepted.append(r.json()["uuid"])
                else:
                    self.refused += 1
                    time.sleep(0.05)


def test_coordinator_sigkilled_during_burst_and_run(db_url: str, tmp_path: Path, pool: WorkerPool) -> None:
    port = free_port()
    data = tmp_path / "coord"
    ran = tmp_path / "ran.txt"
    with fast_coordinator(data, db_url, port=port) as first:
        token, alice = setup_user(first, "alice")
        create_group(alice, "lab")
        pool.start_workers(first, "alice", token, 3, groups=["lab"], polling_interval="300ms")
        burst = Burst(first.url, token, ran, total=120)
        burst.start()
        wait_for(lambda: len(burst.accepted) >= 40 and _runs(ran), 60, "a third of the burst and some runs")
        first.extra["proc"].send_signal(signal.SIGKILL)
        first.extra["proc"].wait(timeout=10)
        killed_at = len(burst.accepted)
        time.sleep(1.0)
    with fast_coordinator(data, db_url, port=port) as second:
        burst.join(timeout=90)
        assert not burst.is_alive(), "the burst did not finish after the restart"
        assert burst.errors > 0, "the burst never saw the coordinator down: the kill did not land mid-burst"
        client = second.client(token)
        _wait_all_committed(client, burst.accepted, 90, pool)
        runs = _runs(ran)
        twice = {u: n for u, n in runs.items() if n > 1}
        assert not twice, f"tasks ran more than once: {twice}"
        missing = [u for u in burst.accepted if runs[u] != 1]
        assert not missing, f"accepted tasks that never ran: {missing[:5]}"
        # Every task that exists (including ones whose 2xx was lost in the kill) ended and ran once.
        r = client.post("/tasks/query", json={"group_name": "lab", "count": True})
        total = r.json()["count"]
        assert total >= len(burst.accepted)
        r = client.post("/tasks/query", json={"group_name": "lab", "states": ["Finished"], "count": True})
        assert r.json()["count"] == total
        assert all(w.alive() for w in pool.workers), pool.logs()
        client.close()
    alice.close()
    print(
        f"RESULT coordinator-kill db={db_url.split(':')[0]} accepted={len(burst.accepted)} "
        f"accepted_before_kill={killed_at} existing={total} transport_errors={burst.errors} "
        f"refused={burst.refused} ran_twice={len(twice)} lost=0"
    )


def test_postgres_restarted_mid_run(tmp_path: Path, pool: WorkerPool) -> None:
    ran = tmp_path / "ran.txt"
    with private_postgres() as pg, fast_coordinator(tmp_path / "coord", pg.url("mito")) as coord:
        token, alice = setup_user(coord, "alice")
        create_group(alice, "lab")
        pool.start_workers(coord, "alice", token, 2, groups=["lab"], polling_interval="300ms")
        uuids = [submit(alice, "lab", _task_body(ran, 0.3)["task_spec"]["args"]) for _ in range(30)]  # type: ignore[index]
        wait_for(lambda: len(_runs(ran)) >= 5, 60, "a few tasks to run")
        t0 = time.monotonic()
        pg.stop("fast")
        down_errors = 0
        for _ in range(5):  # while the database is down the API answers 5xx, never hangs
            try:
                code = alice.get(f"/tasks/{uuids[-1]}", timeout=10).status_code
            except httpx.HTTPError:
                code = 0
            down_errors += code >= 500
            time.sleep(0.3)
        pg.start()
        outage = time.monotonic() - t0
        _wait_all_committed(alice, uuids, 120, pool)
        after = submit(alice, "lab", sh(f'echo "$MITO_TASK_UUID" >> {ran}'))
        _wait_all_committed(alice, [after], 60, pool)
        runs = _runs(ran)
        assert all(runs[u] == 1 for u in [*uuids, after]), runs
        assert coord.extra["proc"].poll() is None, "the coordinator died with its database"
        assert all(w.alive() for w in pool.workers), pool.logs()
        alice.close()
    print(
        f"RESULT postgres-restart tasks={len(uuids) + 1} outage_s={outage:.1f} "
        f"5xx_during_outage={down_errors}/5 lost=0 ran_twice=0"
    )


@pytest.mark.redis
def test_redis_stopped_and_restarted(tmp_path: Path, pool: WorkerPool) -> None:
    """Redis carries only advisory announcements: tasks keep running while it is down.

    Redis is SIGKILLed while a task runs; that task, and the ones submitted during the outage,
    finish and are seen on the event stream; a worker that registers while Redis is down runs its
    tasks too; once Redis is back (empty: no persistence) both workers announce again.
    """
    from tests.reliability.services import redis_server
    from tests.support import databases
    from tests.support.sse import SseReader

    ran = tmp_path / "ran.txt"
    with (
        redis_server() as redis,
        fast_coordinator(tmp_path / "coord", databases.sqlite_url(tmp_path), "--redis", redis.url) as coord,
    ):
        token, alice = setup_user(coord, "alice")
        create_group(alice, "lab")
        [early] = pool.start_workers(
            coord, "alice", token, 1, groups=["lab"], polling_interval="300ms", redis=True
        )
        client_url = alice.get("/redis").json()["url"].split("?", 1)[0]
        before = submit(alice, "lab", sh(f'echo "$MITO_TASK_UUID" >> {ran}'))
        _wait_all_committed(alice, [before], 30, pool)
        # TaskCommitted (19), announced by the worker right after its commit, read with the client ACL.
        wait_for(lambda: _announced_state(client_url, before) == 19, 30, "TaskCommitted on Redis")
        with SseReader(coord.url, token, params={"group": "lab", "state": "Finished"}) as finished:
            finished.wait_connected()
            started = tmp_path / "started"
            running = submit(alice, "lab", sh(f'touch {started}; sleep 2; echo "$MITO_TASK_UUID" >> {ran}'))
            wait_for(started.exists, 30, "the long task to start")
            redis.kill()
            during = [submit(alice, "lab", sh(f'echo "$MITO_TASK_UUID" >> {ran}')) for _ in range(3)]
            _wait_all_committed(alice, [running, *during], 30, pool)
            # The event stream needs no Redis: every commit of the outage arrived on it.
            committed = set()
            while len(committed) < 4:
                m = finished.get(timeout=10)
                if (m.data["data"] or {}).get("committed"):
                    committed.add(m.data["uuid"])
            assert committed == {running, *during}
        assert alice.get("/redis").status_code == 200
        [late] = pool.start_workers(
            coord, "alice", token, 1, groups=["lab"], tags=["late"], polling_interval="300ms", redis=True
        )
        on_late = submit(alice, "lab", sh(f'echo "$MITO_TASK_UUID" >> {ran}'), tags=["late"])
        _wait_all_committed(alice, [on_late], 30, pool)
        redis.start()
        # An empty Redis (no persistence) has lost the ACL users: the coordinator sets them again.
        wait_for(lambda: _announced_state(client_url, before) is None, 30, "the client ACL user to be back")
        after = submit(alice, "lab", sh(f'echo "$MITO_TASK_UUID" >> {ran}'))
        after_late = submit(alice, "lab", sh(f'echo "$MITO_TASK_UUID" >> {ran}'), tags=["late"])
        _wait_all_committed(alice, [after, after_late], 30, pool)
        # Notifications resumed on both workers, including the one that never saw Redis answer.
        wait_for(lambda: _announced_state(client_url, after) == 19, 30, "TaskCommitted of the new task")
        wait_for(
            lambda: _announced_state(client_url, after_late) == 19, 30, "TaskCommitted from the late worker"
        )
        runs = _runs(ran)
        assert all(runs[u] == 1 for u in [before, running, *during, on_late, after, after_late])
        assert early.alive() and late.alive(), pool.logs()
        # Each worker said once that announcements fail, not once per task.
        assert early.log_text().count("redis announcements fail") == 1, early.log_text()[-3000:]
        alice.close()
    print("RESULT redis-kill tasks=8 lost=0 workers_alive=2 events_during_outage=4 notifications_resumed=2")


def _announced_state(client_url: str, task_uuid: str) -> int | None:
    """The exec state code a worker left at ``task:<uuid>``: None when absent, -1 while the client
    user cannot log in (so a wait_for keeps waiting)."""
    import redis as redis_lib

    conn = redis_lib.Redis.from_url(client_url, protocol=3, socket_timeout=5)
    try:
        try:
            value = conn.get(f"task:{task_uuid}")
        except redis_lib.RedisError:
            return -1
        return None if value is None else int(value)
    finally:
        conn.close()
