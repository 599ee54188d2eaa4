"""Query replies are bounded by ``max_query_rows`` (issue 8), on SQLite and PostgreSQL.

The coordinator of this module answers at most 5 rows to one query. A query without ``limit`` that
matches more is a 400 saying how many matched, the bound and how to page; an explicit ``limit``
above the bound is a 400 too; up to the bound, a query without ``limit`` answers every match as
0.6.8 does. The SDK's ``query_all_*`` helpers (what ``mito client tasks query`` and ``groups
attachments query`` use without ``--limit``) still read every row, in pages; the last test runs
the CLI itself against a coordinator with the default page size's bound.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mitosis.client import AsyncMitoClient, MitoClient
from mitosis.client.errors import MitoError
from mitosis.wire import models as m
from tests.support import databases
from tests.support.cluster import create_group, submit_many
from tests.support.coordinator import LiveCoordinator, inprocess_coordinator

BOUND = 5
GROUP = "bounded"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def coord(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveCoordinator]:
    tmp = tmp_path_factory.mktemp(f"bounds-{request.param}")
    with (
        databases.fresh_database(request.param, tmp) as url,
        inprocess_coordinator(tmp / "coord", url, max_query_rows=BOUND) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def token(coord: LiveCoordinator) -> str:
    """A user with 7 tasks in GROUP (5 labelled ``a``, 2 labelled ``b``, one of them archived),
    7 attachments and 7 workers (5 labelled ``a``)."""
    token = coord.create_user("pager", "pw-pager")
    with coord.client(token) as c:
        create_group(c, GROUP)
        body = [
            {"group_name": GROUP, "tags": ["parked"], "labels": [label], "timeout": "1m", "priority": 0,
             "task_spec": {"args": ["true"]}}
            for label in "aaaaabb"
        ]  # fmt: skip
        r = c.post("/tasks/submit", json={"tasks": body})
        assert r.status_code == 200, r.text
        last = r.json()["results"][-1]["Ok"]["uuid"]
        assert c.delete(f"/tasks/{last}").status_code == 200  # archived: the query reads both tables
        for i in range(7):
            r = c.post(f"/groups/{GROUP}/attachments", json={"key": f"k{i}.txt", "content_length": 1})
            assert r.status_code == 200, r.text
            put = httpx.put(r.json()["url"], content=b"x")
            assert put.status_code == 200, put.text
        for label in "aaaaabb":
            r = c.post("/workers", json={"tags": [], "labels": [label], "groups": [GROUP]})
            assert r.status_code == 200, r.text
    return token


def _refused(r: httpx.Response, *parts: str) -> None:
    assert r.status_code == 400, r.text
    msg = r.json()["msg"]
    assert msg.startswith("Process request error: "), msg
    for part in parts:
        assert part in msg, msg


def test_task_query_is_bounded(coord: LiveCoordinator, token: str) -> None:
    with coord.client(token) as c:
        r = c.post("/tasks/query", json={"group_name": GROUP})
        _refused(r, "7 tasks match this query", f"more than the {BOUND}", "max_query_rows", "limit and offset",
                 "count=true")  # fmt: skip
        r = c.post("/tasks/query", json={"group_name": GROUP, "limit": BOUND + 1})
        _refused(r, f"limit {BOUND + 1} is above the {BOUND} rows", "max_query_rows")
        # Up to the bound, everything as before: no limit, an exact fit, pages, counts.
        r = c.post("/tasks/query", json={"group_name": GROUP, "labels": ["a"]})
        assert r.status_code == 200 and r.json()["count"] == BOUND, r.text
        r = c.post("/tasks/query", json={"group_name": GROUP, "offset": 3})
        assert r.status_code == 200 and r.json()["count"] == 4, r.text
        first = c.post("/tasks/query", json={"group_name": GROUP, "limit": BOUND}).json()["tasks"]
        rest = c.post("/tasks/query", json={"group_name": GROUP, "limit": BOUND, "offset": BOUND}).json()[
            "tasks"
        ]
        assert len(first) == BOUND and len(rest) == 2
        assert len({t["uuid"] for t in first + rest}) == 7
        r = c.post("/tasks/query", json={"group_name": GROUP, "count": True, "limit": 1000})
        assert r.status_code == 200 and r.json()["count"] == 7, r.text


def test_attachment_query_is_bounded(coord: LiveCoordinator, token: str) -> None:
    with coord.client(token) as c:
        r = c.post(f"/groups/{GROUP}/attachments/query", json={})
        _refused(r, "7 attachments match this query", f"more than the {BOUND}", "limit and offset")
        r = c.post(f"/groups/{GROUP}/attachments/query", json={"limit": BOUND + 1})
        _refused(r, f"limit {BOUND + 1} is above the {BOUND} rows")
        r = c.post(f"/groups/{GROUP}/attachments/query", json={"key": "k1"})
        assert r.status_code == 200 and [a["key"] for a in r.json()["attachments"]] == ["k1.txt"], r.text
        r = c.post(f"/groups/{GROUP}/attachments/query", json={"limit": BOUND, "offset": BOUND})
        assert [a["key"] for a in r.json()["attachments"]] == ["k5.txt", "k6.txt"], r.text
        r = c.post(f"/groups/{GROUP}/attachments/query", json={"count": True})
        assert r.status_code == 200 and r.json()["count"] == 7, r.text


def test_worker_query_is_bounded(coord: LiveCoordinator, token: str) -> None:
    with coord.client(token) as c:
        r = c.post("/workers/query", json={"group_name": GROUP})
        # 0.6.8's worker query has no limit/offset: the way out is a narrower filter or the count.
        _refused(r, "7 workers match this query", f"more than the {BOUND}", "narrow the filter", "count=true")
        r = c.post("/workers/query", json={"group_name": GROUP, "labels": ["a"]})
        assert r.status_code == 200 and r.json()["count"] == BOUND, r.text
        r = c.post("/workers/query", json={"group_name": GROUP, "count": True})
        assert r.status_code == 200 and r.json()["count"] == 7, r.text


def test_sdk_reads_every_row_in_pages(coord: LiveCoordinator, token: str) -> None:
    with MitoClient(coord.url, token, username="pager") as client:
        with pytest.raises(MitoError, match="7 tasks match"):
            client.query_tasks(m.TasksQueryReq(group_name=GROUP))
        tasks = client.query_all_tasks(m.TasksQueryReq(group_name=GROUP), page=BOUND)
        assert tasks.count == 7 and len({t.uuid for t in tasks.tasks}) == 7
        assert client.query_all_tasks(m.TasksQueryReq(group_name=GROUP, offset=4), page=2).count == 3
        found = client.query_all_attachments(GROUP, page=BOUND)
        assert [a.key for a in found.attachments] == [f"k{i}.txt" for i in range(7)]


def test_sdk_pages_shrink_to_a_smaller_bound(coord: LiveCoordinator, token: str) -> None:
    """A coordinator whose max_query_rows is below the SDK's default page (1000) refuses that page
    and names its bound; query_all_* go on in pages of the bound instead of failing."""
    with MitoClient(coord.url, token, username="pager") as client:
        tasks = client.query_all_tasks(m.TasksQueryReq(group_name=GROUP))
        assert tasks.count == 7 and len({t.uuid for t in tasks.tasks}) == 7
        found = client.query_all_attachments(GROUP)
        assert [a.key for a in found.attachments] == [f"k{i}.txt" for i in range(7)]
        with pytest.raises(
            MitoError, match="Failed to parse number from ~~1"
        ):  # any other refusal still reaches the caller
            client.query_all_tasks(m.TasksQueryReq(group_name=GROUP, exit_status="~~1"))

    async def read_async() -> tuple[int, list[str]]:
        async with AsyncMitoClient(coord.url, token, username="pager") as client:
            tasks = await client.query_all_tasks(m.TasksQueryReq(group_name=GROUP))
            found = await client.query_all_attachments(GROUP)
            return tasks.count, [a.key for a in found.attachments]

    assert asyncio.run(read_async()) == (7, [f"k{i}.txt" for i in range(7)])


def test_cli_query_without_limit_pages(tmp_path: Path) -> None:
    """``mito client tasks query`` without ``--limit`` lists every task of a group past the bound."""
    with inprocess_coordinator(
        tmp_path / "coord", databases.sqlite_url(tmp_path), max_query_rows=1000
    ) as coord:
        token = coord.create_user("many", "pw-many")
        with coord.client(token) as c:
            uuids = submit_many(c, "many", [["true"]] * 1003, chunk=1003)
            assert c.post("/tasks/query", json={}).status_code == 400
        cred = tmp_path / "credentials"
        cred.write_text(f"many:{token}")
        out = subprocess.run(
            [sys.executable, "-m", "mitosis.cli.main", "client", "-c", coord.url, "--credential-path", str(cred),
             "-u", "many", "tasks", "query", "--json"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        listed = json.loads(out.stdout)
        assert listed["count"] == 1003 and {t["uuid"] for t in listed["tasks"]} == set(uuids)
