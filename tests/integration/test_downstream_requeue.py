"""DECISIONS S10 on re-queue: the downstream task of a run that was lost is cancelled, not promoted."""

from __future__ import annotations

from tests.support.coordinator import LiveCoordinator

TASK = {"group_name": "mitosis_admin", "timeout": "1m", "task_spec": {"args": ["true"]}}


def test_requeued_upstream_cancels_its_pending_downstream(live_coordinator: LiveCoordinator) -> None:
    with live_coordinator.admin() as admin:
        upstream = admin.post("/tasks", json=TASK).json()["uuid"]
        reg = admin.post("/workers", json={"tags": [], "labels": [], "groups": []}).json()
        with live_coordinator.client(reg["token"]) as worker:
            got = worker.get("/workers/tasks").json()
            assert got["uuid"] == upstream
            assert worker.post("/workers/tasks", json={"id": got["id"], "op": "Finish"}).status_code == 200
            sub = worker.post("/workers/tasks", json={"id": got["id"], "op": {"Submit": TASK}})
            assert sub.status_code == 200, sub.text
            downstream = admin.get(f"/tasks/{upstream}").json()["info"]["downstream_task_uuid"]
            assert admin.get(f"/tasks/{downstream}").json()["info"]["state"] == "Pending"
            # The worker goes away before committing: its task runs again elsewhere.
            assert worker.delete("/workers").status_code == 200
        up = admin.get(f"/tasks/{upstream}").json()["info"]
        assert up["state"] == "Ready" and up["downstream_task_uuid"] is None
        down = admin.get(f"/tasks/{downstream}").json()["info"]
        assert down["state"] == "Cancelled"
        assert down["result"] == {"exit_status": 0, "msg": "UserCancellation"}
