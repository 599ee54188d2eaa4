"""The coordinator's backstops (DECISIONS S4, S15; README "when things go wrong"), driven by raw-HTTP
workers against a `mito coordinator` process on SQLite and on PostgreSQL.

* a task Running past ``timeout + task_timeout_grace`` on a worker that still heartbeats is ended by
  the coordinator: Cancelled with ``ExecTimeout``, the worker told to stop it, the worker kept;
* a worker whose ``lifetime`` ends is removed like a silent one and its Running task goes back to
  Ready for another worker.

Both coordinators reap every 0.5 s with a 5 s timeout grace (``fast_coordinator``); the shared
``coord`` fixture (tests/e2e/conftest.py) has a 4 s heartbeat timeout, the lifetime test's own one
60 s. Heartbeat reaping of a silent worker is covered by
``test_resilience_e2e.py::test_worker_killed_mid_task_is_requeued`` and
``tests/reliability/test_worker_faults.py::test_network_cut_longer_than_heartbeat_timeout``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.cluster import (
    create_group,
    fast_coordinator,
    get_task,
    setup_user,
    sh,
    submit,
    wait_state,
)
from tests.support.coordinator import LiveCoordinator
from tests.support.databases import Names

pytestmark = pytest.mark.e2e

TIMEOUT_GRACE = 5.0  # task_timeout_grace of fast_coordinator


@dataclass
class RawWorker:
    """A worker that speaks the protocol by hand: it heartbeats when told to and never reports."""

    uuid: str
    http: httpx.Client
    heartbeats: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def fetch(self) -> dict[str, Any]:
        r = self.http.get("/workers/tasks")
        assert r.status_code == 200, r.text
        assert r.json() is not None, "no task to fetch"
        return dict(r.json())

    def keep_heartbeating(self, interval: float = 0.5) -> None:
        def beat() -> None:
            while not self._stop.wait(interval):
                with contextlib.suppress(httpx.HTTPError):
                    status = self.http.post("/workers/heartbeat").status_code
                    self.heartbeats.append((time.monotonic(), status))

        self._thread = threading.Thread(target=beat, daemon=True)
        self._thread.start()

    def stop_heartbeating(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


@contextlib.contextmanager
def raw_worker(
    coord: LiveCoordinator, user: httpx.Client, groups: list[str], lifetime: str | None = None
) -> Iterator[RawWorker]:
    r = user.post("/workers", json={"tags": [], "labels": [], "groups": groups, "lifetime": lifetime})
    assert r.status_code == 200, r.text
    body = r.json()
    headers = {"Authorization": f"Bearer {body['token']}"}
    with httpx.Client(base_url=coord.url, headers=headers, timeout=30) as http:
        worker = RawWorker(uuid=str(body["worker_id"]), http=http)
        try:
            yield worker
        finally:
            worker.stop_heartbeating()
            with contextlib.suppress(httpx.HTTPError):
                http.delete("/workers")  # gone already (401) in the lifetime test


def test_task_past_timeout_on_a_live_worker_is_cancelled_with_exec_timeout(
    coord: LiveCoordinator, names: Names
) -> None:
    user, lab = names("alice"), names("lab")
    _, alice = setup_user(coord, user)
    create_group(alice, lab)
    uuid = submit(alice, lab, sh("true"), timeout="1s")
    with raw_worker(coord, alice, [lab]) as worker:
        task = worker.fetch()
        claimed = time.monotonic()
        assert task["uuid"] == uuid
        worker.keep_heartbeating()
        # Past its 1 s timeout but within the grace, the task is still the worker's to end.
        time.sleep(2.5)
        assert get_task(alice, uuid)["info"]["state"] == "Running"

        # The worker's signals long-poll is how it learns the coordinator took the task away.
        r = worker.http.get("/workers/signals", params={"wait": "20s", "task": task["id"]}, timeout=30)
        fired = time.monotonic() - claimed
        assert r.status_code == 200, r.text
        assert r.json() == {"cancel": [task["id"]]}
        # 1 s timeout + 5 s grace after the claim (less the claim's round trip), plus a reaper pass.
        assert TIMEOUT_GRACE < fired < 15, fired

        info = get_task(alice, uuid)["info"]
        assert info["state"] == "Cancelled"
        assert info["result"] == {"exit_status": 0, "msg": "ExecTimeout"}
        assert info["reporter_uuid"] is None

        # The worker was alive: it stays registered, free for the next task.
        r = alice.get(f"/workers/{worker.uuid}")
        assert r.status_code == 200, r.text
        assert r.json()["info"]["state"] == "Normal"
        assert r.json()["info"]["assigned_task_id"] is None
        assert worker.heartbeats and all(status == 200 for _, status in worker.heartbeats)

        # Its late report is refused and changes nothing.
        r = worker.http.post("/workers/tasks", json={"id": task["id"], "op": "Finish"})
        assert r.status_code == 404, r.text
        assert get_task(alice, uuid)["info"] == info
    alice.close()


def test_worker_lifetime_end_removes_it_and_requeues_its_task(db_url: str, tmp_path: Path) -> None:
    # Its own coordinator, whose heartbeat timeout (60 s) cannot be what removes the worker: once
    # its lifetime ends the worker's heartbeats are refused, and on `coord` (4 s) silence would
    # remove it a few seconds later anyway.
    with fast_coordinator(tmp_path / "coord", db_url, heartbeat_timeout="60s") as coord:
        _, alice = setup_user(coord, "alice")
        create_group(alice, "lab")
        uuid = submit(alice, "lab", sh("true"), timeout="5m")
        with raw_worker(coord, alice, ["lab"], lifetime="3s") as worker:
            registered = time.monotonic()
            task = worker.fetch()
            assert task["uuid"] == uuid
            worker.keep_heartbeating()
            r = alice.get(f"/workers/{worker.uuid}")
            assert r.status_code == 200, r.text
            assert r.json()["info"]["assigned_task_id"] == uuid
            assert get_task(alice, uuid)["info"]["state"] == "Running"

            info = wait_state(alice, uuid, "Ready", timeout=15)["info"]
            gone_after = time.monotonic() - registered
            assert 2.5 < gone_after < 15, gone_after  # the 3 s lifetime, plus a reaper pass
            assert info["result"] is None and info["reporter_uuid"] is None

            # The worker is gone, although it heartbeat until its lifetime ended.
            r = alice.get(f"/workers/{worker.uuid}")
            assert r.status_code == 404, r.text
            r = alice.post("/workers/query", json={"group_name": "lab"})
            assert r.status_code == 200, r.text
            assert r.json()["workers"] == []
            accepted = [at - registered for at, status in worker.heartbeats if status == 200]
            assert accepted and max(accepted) > 2.0, worker.heartbeats
            # Its token ended with it (S15).
            worker.stop_heartbeating()
            assert worker.http.post("/workers/heartbeat").status_code == 401
            assert worker.http.get("/workers/tasks").status_code == 401

        # Back in the queue, the task goes to the next worker.
        with raw_worker(coord, alice, ["lab"]) as other:
            assert other.fetch()["uuid"] == uuid
            assert get_task(alice, uuid)["info"]["state"] == "Running"
        alice.close()
