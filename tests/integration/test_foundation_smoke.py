"""End-to-end smoke of the foundation on both databases: login, groups, submit, fetch, commit."""

from __future__ import annotations

from tests.support.coordinator import LiveCoordinator


def test_submit_fetch_commit_roundtrip(live_coordinator: LiveCoordinator) -> None:
    with live_coordinator.admin() as c:
        r = c.post(
            "/tasks",
            json={
                "group_name": "mitosis_admin",
                "tags": [],
                "labels": ["x"],
                "timeout": "1m",
                "priority": 3,
                "task_spec": {"args": ["true"]},
            },
        )
        assert r.status_code == 200, r.text
        task = r.json()
        assert task["task_id"] == 1
        w = c.post("/workers", json={"tags": [], "labels": [], "groups": []}).json()
        wc = live_coordinator.client(w["token"])
        got = wc.get("/workers/tasks").json()
        assert got["uuid"] == task["uuid"] and got["timeout"] == "1m"
        assert wc.post("/workers/tasks", json={"id": got["id"], "op": "Finish"}).json() == {"url": None}
        r = wc.post(
            "/workers/tasks", json={"id": got["id"], "op": {"Commit": {"exit_status": 256, "msg": None}}}
        )
        assert r.status_code == 200, r.text
        info = c.get(f"/tasks/{task['uuid']}").json()["info"]
        assert info["state"] == "Finished"
        assert info["result"] == {"exit_status": 256, "msg": None}
        assert info["reporter_uuid"] == w["worker_id"]
        assert wc.get("/workers/tasks").json() is None
