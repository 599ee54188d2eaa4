"""The long-poll fetch (``GET /workers/tasks?wait=``) on its real path, with `mito coordinator` processes.

* held on a coordinator, it answers with a task submitted to that coordinator afterwards, at once
  rather than at the end of the wait (the in-process wake), on SQLite and on PostgreSQL;
* held on coordinator B, it answers with a task submitted to coordinator A on the same PostgreSQL
  database (the LISTEN/NOTIFY wake: nothing in B's memory knows of the submission).
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.cluster import create_group, fast_coordinator, get_task, setup_user, sh, submit, wait_for
from tests.support.coordinator import LiveCoordinator
from tests.support.databases import Names

pytestmark = pytest.mark.e2e

WAIT = "20s"


def register(coord: LiveCoordinator, user: httpx.Client, group: str) -> tuple[str, httpx.Client]:
    """A raw-HTTP worker on ``coord``: its uuid and a client carrying its token (close it yourself)."""
    r = user.post("/workers", json={"tags": [], "labels": [], "groups": [group], "lifetime": None})
    assert r.status_code == 200, r.text
    headers = {"Authorization": f"Bearer {r.json()['token']}"}
    return str(r.json()["worker_id"]), httpx.Client(base_url=coord.url, headers=headers, timeout=30)


class HeldFetch:
    """``GET /workers/tasks?wait=20s`` running on a thread; :meth:`answer` joins it. The worker
    heartbeats meanwhile, so a reaper (4 s on ``coord``) never takes it for a dead one."""

    def __init__(self, worker: httpx.Client) -> None:
        self._worker = worker
        self._out: dict[str, Any] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._fetch, daemon=True)
        self._beats = threading.Thread(target=self._heartbeat, daemon=True)
        self._thread.start()
        self._beats.start()

    def _fetch(self) -> None:
        try:
            self._out["response"] = self._worker.get("/workers/tasks", params={"wait": WAIT}, timeout=40)
            self._out["at"] = time.monotonic()
        finally:
            self._done.set()

    def _heartbeat(self) -> None:
        while not self._done.wait(0.5):
            with contextlib.suppress(httpx.HTTPError):
                self._worker.post("/workers/heartbeat")

    def held(self) -> bool:
        return self._thread.is_alive()

    def answer(self) -> tuple[httpx.Response, float]:
        self._thread.join(timeout=40)
        self._beats.join(timeout=10)
        assert not self._thread.is_alive(), "the long-poll did not end within its wait"
        return self._out["response"], self._out["at"]


def _assert_woken(fetch: HeldFetch, submitted: float, uuid: str) -> None:
    response, answered = fetch.answer()
    assert response.status_code == 200, response.text
    assert response.json() is not None, "the long-poll ran out its wait without the task"
    assert response.json()["uuid"] == uuid
    assert answered - submitted < 5.0, f"answered {answered - submitted:.1f}s after the submission"


def _woken_by_a_submission(
    worker: httpx.Client, worker_uuid: str, submitter: httpx.Client, group: str
) -> None:
    """A fetch held by ``worker`` answers with a task ``submitter`` sends to ``group`` meanwhile,
    promptly, and the task is then Running on that worker."""
    fetch = HeldFetch(worker)
    time.sleep(1.5)
    assert fetch.held(), "the fetch answered before any task existed"
    submitted = time.monotonic()
    uuid = submit(submitter, group, sh("true"))
    _assert_woken(fetch, submitted, uuid)
    assert get_task(submitter, uuid)["info"]["state"] == "Running"
    r = submitter.get(f"/workers/{worker_uuid}")
    assert r.status_code == 200 and r.json()["info"]["assigned_task_id"] == uuid, r.text


def test_long_poll_returns_a_task_submitted_while_it_waits(coord: LiveCoordinator, names: Names) -> None:
    user, lab = names("alice"), names("lab")
    _, alice = setup_user(coord, user)
    create_group(alice, lab)
    worker_uuid, worker = register(coord, alice, lab)
    with worker:
        _woken_by_a_submission(worker, worker_uuid, alice, lab)
        worker.delete("/workers")
    alice.close()


@pytest.mark.postgres
def test_long_poll_on_one_coordinator_wakes_for_a_submission_to_another(pg_url: str, tmp_path: Path) -> None:
    data = tmp_path / "coord"
    with (
        # Replicas share the signing keys and the blob directory: one data directory, two processes.
        fast_coordinator(data, pg_url, heartbeat_timeout="60s", log=tmp_path / "a.log") as a,
        fast_coordinator(data, pg_url, heartbeat_timeout="60s", log=tmp_path / "b.log") as b,
    ):
        token, alice_a = setup_user(a, "alice")
        create_group(alice_a, "lab")
        alice_b = b.client(token)
        wait_for(
            lambda: "listening for cross-coordinator notifications" in (tmp_path / "b.log").read_text(),
            20,
            "coordinator B to listen for notifications",
        )
        worker_uuid, worker = register(b, alice_b, "lab")
        with worker:
            _woken_by_a_submission(worker, worker_uuid, alice_a, "lab")
            worker.delete("/workers")
        alice_a.close()
        alice_b.close()
