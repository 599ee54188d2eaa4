"""`GET /metrics`: Prometheus text with request counts by route template and tasks by state."""

from __future__ import annotations

import re

import httpx

from tests.support.coordinator import LiveCoordinator


def _sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name}{labels} in metrics")


def test_metrics_count_requests_and_tasks(live_coordinator: LiveCoordinator) -> None:
    with live_coordinator.admin() as admin:
        for _ in range(3):
            r = admin.post("/tasks", json={"group_name": "mitosis_admin", "task_spec": {"args": ["true"]}})
            assert r.status_code == 200
        uuid = r.json()["uuid"]
        assert admin.get(f"/tasks/{uuid}").status_code == 200
        assert admin.get("/tasks/00000000-0000-0000-0000-000000000000").status_code == 404
    text = httpx.get(f"{live_coordinator.url}/metrics").text
    assert _sample(text, "mitosis_http_requests_total", method="POST", route="/tasks", status="200") >= 3
    # The route template, not the raw path, keeps label values bounded.
    assert (
        _sample(text, "mitosis_http_requests_total", method="GET", route="/tasks/{task_uuid}", status="404")
        == 1
    )
    assert _sample(text, "mitosis_active_tasks", state="Ready") == 3
    assert _sample(text, "mitosis_workers", state="Normal") == 0
