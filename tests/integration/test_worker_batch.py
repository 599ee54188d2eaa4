"""``POST /workers/batch`` (our addition): commit many, give back, reconcile and claim in one request.

Every case runs on SQLite and PostgreSQL (the PostgreSQL path is one statement, the SQLite path
several: both must leave the same rows and events behind).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.coordinator import LiveCoordinator
from tests.support.databases import Names
from tests.support.sse import SseReader

OK = {"exit_status": 0, "msg": None}


class Lab:
    """A user with a group, a worker serving it, and helpers to look at tasks."""

    def __init__(self, coord: LiveCoordinator, names: Names) -> None:
        self.coord = coord
        self.user = names("batch")
        self.password = "pw-" + self.user
        self.token = coord.create_user(self.user, self.password)
        self.client = coord.client(self.token)
        self.worker = self.register()

    def register(self, **extra: Any) -> httpx.Client:
        r = self.client.post("/workers", json={"tags": [], "labels": [], "groups": [], **extra})
        assert r.status_code == 200, r.text
        return self.coord.client(r.json()["token"])

    def submit(self, n: int = 1, **extra: Any) -> list[str]:
        body = {"group_name": self.user, "timeout": "1m", "task_spec": {"args": ["true"]}, **extra}
        r = self.client.post("/tasks/submit", json={"tasks": [body] * n})
        assert r.status_code == 200, r.text
        return [item["Ok"]["uuid"] for item in r.json()["results"]]

    def info(self, uuid: str) -> dict[str, Any]:
        r = self.client.get(f"/tasks/{uuid}")
        assert r.status_code == 200, r.text
        return dict(r.json()["info"])

    def events(self, uuid: str) -> list[dict[str, Any]]:
        """Every recorded event of a task, oldest first (replayed from the start of the log)."""
        with SseReader(self.coord.url, self.token, params={"task": uuid, "last_event_id": 0}) as sse:
            sse.wait_connected()
            return [m.data for m in sse.replay() if m.event == "task"]


def batch(worker: httpx.Client, **body: Any) -> dict[str, Any]:
    r = worker.post("/workers/batch", json=body)
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.fixture
def lab(module_coordinator: LiveCoordinator, names: Names) -> Iterator[Lab]:
    lab = Lab(module_coordinator, names)
    try:
        yield lab
    finally:
        lab.worker.close()
        lab.client.close()


def test_claims_in_priority_order_and_points_the_worker_at_the_first(lab: Lab) -> None:
    low = lab.submit(2, priority=1)
    high = lab.submit(1, priority=5)
    got = batch(lab.worker, fetch=10, holding=[])
    assert [t["uuid"] for t in got["tasks"]] == [*high, *low]
    assert got["refused"] == [] and got["cancel"] == [] and got["lost"] == []
    for uuid in [*high, *low]:
        assert lab.info(uuid)["state"] == "Running"
    workers = lab.client.post("/workers/query", json={"group_name": lab.user}).json()["workers"]
    assert [w["assigned_task_id"] for w in workers] == [high[0]]


def test_done_commits_each_task_with_its_result_and_one_committed_event(lab: Lab) -> None:
    uuids = lab.submit(3)
    tasks = batch(lab.worker, fetch=3, holding=[])["tasks"]
    done = [
        {"id": tasks[0]["id"], "op": "Finish", "result": OK},
        {"id": tasks[1]["id"], "op": "Finish", "result": {"exit_status": 768, "msg": None}},
        {"id": tasks[2]["id"], "op": "Cancel", "result": {"exit_status": 0, "msg": "UserCancellation"}},
    ]
    got = batch(lab.worker, done=done, holding=[])
    assert got == {"refused": [], "tasks": [], "cancel": [], "lost": []}
    infos = [lab.info(u) for u in uuids]
    assert [i["state"] for i in infos] == ["Finished", "Finished", "Cancelled"]
    assert [i["result"] for i in infos] == [d["result"] for d in done]
    assert len({i["reporter_uuid"] for i in infos}) == 1 and infos[0]["reporter_uuid"] is not None
    states = [(e.get("state"), (e.get("data") or {}).get("committed")) for e in lab.events(uuids[1])]
    assert ("Running", None) in states and ("Finished", True) in states
    workers = lab.client.post("/workers/query", json={"group_name": lab.user}).json()["workers"]
    assert workers[0]["assigned_task_id"] is None


def test_done_after_a_separate_finish_report_keeps_that_state(lab: Lab) -> None:
    [uuid] = lab.submit()
    [task] = batch(lab.worker, fetch=1, holding=[])["tasks"]
    assert lab.worker.post("/workers/tasks", json={"id": task["id"], "op": "Cancel"}).status_code == 200
    batch(lab.worker, done=[{"id": task["id"], "op": "Finish", "result": OK}])
    assert lab.info(uuid)["state"] == "Cancelled"


def test_refusals_are_per_entry_and_leave_the_others_committed(lab: Lab) -> None:
    [mine] = lab.submit()
    [task] = batch(lab.worker, fetch=1, holding=[])["tasks"]
    other = lab.register()
    [theirs_uuid] = lab.submit()
    [theirs] = batch(other, fetch=1, holding=[])["tasks"]
    got = batch(
        lab.worker,
        done=[
            {"id": 10**12, "op": "Finish", "result": OK},
            {"id": task["id"], "op": "Finish", "result": OK},
            {"id": theirs["id"], "op": "Finish", "result": OK},
        ],
    )
    assert got["refused"] == [
        {"id": 10**12, "status": 404, "msg": f"Task {10**12} not found"},
        {"id": theirs["id"], "status": 404, "msg": f"Task {theirs['id']} not found"},
    ]
    assert lab.info(mine)["state"] == "Finished"
    assert lab.info(theirs_uuid)["state"] == "Running"
    other.close()


def test_bad_batches_are_refused_whole_with_the_reason(lab: Lab) -> None:
    [uuid] = lab.submit()
    [task] = batch(lab.worker, fetch=1, holding=[])["tasks"]
    twice = {"id": task["id"], "op": "Finish", "result": OK}
    r = lab.worker.post("/workers/batch", json={"done": [twice, twice]})
    assert r.status_code == 400 and r.json()["msg"].endswith("a task appears twice in done")
    r = lab.worker.post("/workers/batch", json={"fetch": 65})
    assert r.status_code == 422 and "fetch" in r.json()["msg"]
    r = lab.worker.post("/workers/batch", json={"done": [{"id": task["id"], "op": "Explode", "result": OK}]})
    assert r.status_code == 422 and "op" in r.json()["msg"]
    assert lab.info(uuid)["state"] == "Running"  # nothing applied
    r = lab.client.post("/workers/batch", json={})
    assert r.status_code == 403 and "user token" in r.json()["msg"]


def test_release_gives_tasks_back_to_any_worker(lab: Lab) -> None:
    uuids = lab.submit(3)
    tasks = batch(lab.worker, fetch=3, holding=[])["tasks"]
    got = batch(lab.worker, release=[t["id"] for t in tasks[1:]], holding=[tasks[0]["id"]])
    assert got["tasks"] == [] and got["lost"] == []
    assert [lab.info(u)["state"] for u in uuids] == ["Running", "Ready", "Ready"]
    other = lab.register()
    again = batch(other, fetch=5, holding=[])["tasks"]
    assert sorted(t["uuid"] for t in again) == sorted(uuids[1:])
    other.close()


def test_a_released_task_whose_cancel_was_requested_ends_cancelled(lab: Lab) -> None:
    [uuid] = lab.submit()
    [task] = batch(lab.worker, fetch=1, holding=[])["tasks"]
    assert lab.client.delete(f"/tasks/{uuid}").status_code == 200  # S5: a Running task is flagged
    got = batch(lab.worker, holding=[task["id"]], fetch=1)
    assert got["cancel"] == [task["id"]]
    batch(lab.worker, release=[task["id"]], holding=[])
    info = lab.info(uuid)
    assert info["state"] == "Cancelled" and info["result"] == {"exit_status": 0, "msg": "UserCancellation"}


def test_a_claim_the_worker_never_heard_of_goes_back_to_ready(lab: Lab) -> None:
    [uuid] = lab.submit()
    batch(lab.worker, fetch=1, holding=[])  # the answer is "lost": the worker does not list it
    assert lab.info(uuid)["state"] == "Running"
    got = batch(lab.worker, holding=[])
    assert got["tasks"] == []
    assert lab.info(uuid)["state"] == "Ready"
    states = [e.get("state") for e in lab.events(uuid)]
    assert states.count("Running") == 1 and states[-1] == "Ready"


def test_held_tasks_that_are_no_longer_ours_are_reported_lost(lab: Lab) -> None:
    [uuid] = lab.submit()
    [task] = batch(lab.worker, fetch=1, holding=[])["tasks"]
    other = lab.register()
    # The classic fetch of 0.6.8 workers also re-queues what a fetching worker still holds.
    assert other.get("/workers/tasks").json() is None
    batch(lab.worker, release=[task["id"]], holding=[])
    [again] = batch(other, fetch=1, holding=[])["tasks"]
    assert again["uuid"] == uuid
    got = batch(lab.worker, holding=[task["id"]])
    assert got["lost"] == [task["id"]] and got["cancel"] == []
    other.close()


def test_classic_fetch_requeues_a_claim_that_never_reached_the_worker(lab: Lab) -> None:
    first, second = lab.submit(2)
    got = lab.worker.get("/workers/tasks").json()
    assert got["uuid"] == first
    # A 0.6.8 worker fetches only when it runs nothing: the first claim's answer was lost. The
    # fetch claims the next task, and the forgotten one goes back to Ready for any worker.
    again = lab.worker.get("/workers/tasks").json()
    assert again["uuid"] == second
    assert lab.info(first)["state"] == "Ready"
    states = [(e.get("state"), (e.get("data") or {}).get("requeued")) for e in lab.events(first)]
    assert states == [("Ready", None), ("Running", None), ("Ready", True)]
    workers = lab.client.post("/workers/query", json={"group_name": lab.user}).json()["workers"]
    assert [w["assigned_task_id"] for w in workers] == [second]
    # With nothing else to claim, the forgotten task itself comes back at once.
    third = lab.worker.get("/workers/tasks").json()
    assert third["uuid"] == first
    assert lab.info(second)["state"] == "Ready"


def test_downstream_tasks_are_promoted_through_the_batch(lab: Lab) -> None:
    [up] = lab.submit()
    [task] = batch(lab.worker, fetch=1, holding=[])["tasks"]
    assert lab.worker.post("/workers/tasks", json={"id": task["id"], "op": "Finish"}).status_code == 200
    child = {"group_name": lab.user, "timeout": "1m", "task_spec": {"args": ["true"]}}
    r = lab.worker.post("/workers/tasks", json={"id": task["id"], "op": {"Submit": child}})
    assert r.status_code == 200, r.text
    down = lab.info(up)["downstream_task_uuid"]
    assert lab.info(down)["state"] == "Pending"
    got = batch(lab.worker, done=[{"id": task["id"], "op": "Finish", "result": OK}], fetch=1, holding=[])
    assert got["refused"] == []
    assert lab.info(up)["state"] == "Finished" and lab.info(up)["result"] == OK
    assert [t["uuid"] for t in got["tasks"]] == [down]


def test_graceful_shutdown_removes_the_worker_at_its_commit_and_requeues_the_rest(lab: Lab) -> None:
    uuids = lab.submit(3)
    tasks = batch(lab.worker, fetch=3, holding=[])["tasks"]
    worker_uuid = lab.client.post("/workers/query", json={"group_name": lab.user}).json()["workers"][0]
    r = lab.client.delete(f"/workers/{worker_uuid['worker_id']}", params={"op": "Graceful"})
    assert r.status_code == 200, r.text
    got = batch(lab.worker, done=[{"id": tasks[0]["id"], "op": "Finish", "result": OK}], fetch=3, holding=[])
    assert got["tasks"] == []
    assert [lab.info(u)["state"] for u in uuids] == ["Finished", "Ready", "Ready"]
    r = lab.worker.post("/workers/batch", json={})
    assert r.status_code == 401


def test_a_locked_creator_gets_no_tasks_but_results_still_land(
    lab: Lab, module_coordinator: LiveCoordinator
) -> None:
    uuids = lab.submit(2)
    [task] = batch(lab.worker, fetch=1, holding=[])["tasks"]
    with module_coordinator.admin() as admin:
        r = admin.post(f"/admin/users/{lab.user}/state", json={"state": "Locked"})
        assert r.status_code == 200, r.text
    got = batch(lab.worker, done=[{"id": task["id"], "op": "Finish", "result": OK}])
    assert got["refused"] == []
    r = lab.worker.post("/workers/batch", json={"fetch": 1})
    assert r.status_code == 403 and "no longer active" in r.json()["msg"]
    with module_coordinator.admin() as admin:
        admin.post(f"/admin/users/{lab.user}/state", json={"state": "Active"})
    assert [lab.client.get(f"/tasks/{u}").json()["info"]["state"] for u in uuids] == ["Finished", "Ready"]


def test_long_poll_returns_when_a_task_arrives(lab: Lab) -> None:
    out: dict[str, Any] = {}

    def poll() -> None:
        t0 = time.monotonic()
        out["resp"] = batch(lab.worker, fetch=4, wait="20s", holding=[])
        out["held"] = time.monotonic() - t0

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(0.5)
    [uuid] = lab.submit()
    thread.join(timeout=30)
    assert [t["uuid"] for t in out["resp"]["tasks"]] == [uuid]
    assert 0.4 < out["held"] < 15


# Hand-offs (PostgreSQL): a single submission gives its task straight to a worker parked in a
# long-poll of this coordinator, in the submission's own statement. SQLite wakes the waiter, which
# claims it: what the worker, the task, the worker row and the event log show must be the same.


def _long_poll(lab: Lab, out: dict[str, Any], **body: Any) -> threading.Thread:
    def poll() -> None:
        out["resp"] = batch(lab.worker, **{"fetch": 4, "wait": "20s", "holding": [], **body})

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(0.5)  # the worker is parked now
    return thread


def _submit_one(lab: Lab, **extra: Any) -> str:
    body = {"group_name": lab.user, "timeout": "1m", "task_spec": {"args": ["echo", "hi"]}, **extra}
    r = lab.client.post("/tasks", json=body)
    assert r.status_code == 200, r.text
    return str(r.json()["uuid"])


@pytest.fixture
def statements(lab: Lab) -> Iterator[list[str]]:
    """The statements the coordinator sends through its hot-path connector (PostgreSQL) meanwhile."""
    from mitosis.coordinator.db import raw

    sent: list[str] = []

    def observe(sql: str, _args: tuple[Any, ...]) -> None:
        sent.append(sql)

    raw.observers.append(observe)
    try:
        yield sent
    finally:
        raw.observers.remove(observe)


def test_a_parked_worker_gets_a_submission_directly(lab: Lab, statements: list[str]) -> None:
    out: dict[str, Any] = {}
    thread = _long_poll(lab, out)
    statements.clear()
    uuid = _submit_one(lab, labels=["x"])
    thread.join(timeout=30)
    meanwhile = list(statements)
    [task] = out["resp"]["tasks"]
    assert task["uuid"] == uuid and task["spec"]["args"] == ["echo", "hi"] and task["timeout"] == "1m"
    info = lab.info(uuid)
    assert info["state"] == "Running" and info["labels"] == ["x"]
    workers = lab.client.post("/workers/query", json={"group_name": lab.user}).json()["workers"]
    assert [w["assigned_task_id"] for w in workers] == [uuid]
    assert [e["state"] for e in lab.events(uuid)] == ["Ready", "Running"]
    if lab.coord.db_url.startswith("postgresql"):
        # The submission's statement took the task to the worker: no claim ran after it.
        assert any("INSERT INTO active_tasks" in sql for sql in meanwhile), meanwhile
        assert not any("SKIP LOCKED" in sql for sql in meanwhile), meanwhile
    # The task runs and ends like any other.
    done = [{"id": task["id"], "op": "Finish", "result": OK}]
    assert batch(lab.worker, done=done, holding=[])["refused"] == []
    assert lab.info(uuid)["state"] == "Finished"


def test_a_task_the_parked_worker_may_not_run_stays_ready_for_one_that_may(lab: Lab) -> None:
    out: dict[str, Any] = {}
    thread = _long_poll(lab, out, wait="2s")
    uuid = _submit_one(lab, tags=["gpu"])  # lab.worker has no tags
    thread.join(timeout=30)
    assert out["resp"]["tasks"] == []
    info = lab.info(uuid)
    assert info["state"] == "Ready"
    gpu = lab.register(tags=["gpu"])
    try:
        assert [t["uuid"] for t in batch(gpu, fetch=1, holding=[])["tasks"]] == [uuid]
    finally:
        gpu.close()
    assert [e["state"] for e in lab.events(uuid)] == ["Ready", "Running"]


def test_the_classic_long_poll_gets_a_submission_directly(lab: Lab) -> None:
    out: dict[str, Any] = {}

    def poll() -> None:
        r = lab.worker.get("/workers/tasks", params={"wait": "20s"})
        out["status"], out["body"] = r.status_code, r.json()

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(0.5)
    uuid = _submit_one(lab)
    thread.join(timeout=30)
    assert out["status"] == 200 and out["body"]["uuid"] == uuid
    assert lab.info(uuid)["state"] == "Running"


def test_a_task_handed_to_a_worker_that_hung_up_goes_back_to_ready(lab: Lab) -> None:
    hasty = lab.coord.client(lab.worker.headers["Authorization"].removeprefix("Bearer "))
    hasty.timeout = httpx.Timeout(0.3)

    def poll() -> None:
        with pytest.raises(httpx.TimeoutException):
            hasty.post("/workers/batch", json={"fetch": 1, "wait": "20s", "holding": []})

    thread = threading.Thread(target=poll)
    thread.start()
    thread.join(timeout=10)
    # The coordinator has not noticed yet (it looks once a second): the submission reaches the
    # parked request of a worker that is gone, which must give the task back, not keep it.
    uuid = _submit_one(lab)
    deadline = time.monotonic() + 10
    while lab.info(uuid)["state"] != "Ready" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lab.info(uuid)["state"] == "Ready"
    assert [t["uuid"] for t in batch(lab.worker, fetch=1, holding=[])["tasks"]] == [uuid]
    hasty.close()
