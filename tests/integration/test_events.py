"""The event stream (`GET /events`) against real coordinators on SQLite and PostgreSQL.

Covers: the ordered events of a task's life (submit, claim, finish, commit), nothing lost between
the stream's status line and its first event, every filter, 403 and
no events for a reader without rights, replay by Last-Event-ID without loss, the `reset` message once
the window was pruned, keep-alive comments, and two coordinators sharing one PostgreSQL database
with the reader on the other coordinator than the one making the changes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tests.support import databases
from tests.support.coordinator import LiveCoordinator, inprocess_coordinator
from tests.support.sse import SseReader

WIRE_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \+00:00:00$")


def submit(c: httpx.Client, group: str = "mitosis_admin", labels: list[str] | None = None) -> str:
    r = c.post(
        "/tasks",
        json={
            "group_name": group,
            "tags": [],
            "labels": labels or [],
            "timeout": "1m",
            "priority": 0,
            "task_spec": {"args": ["true"]},
        },
    )
    assert r.status_code == 200, r.text
    return str(r.json()["uuid"])


def run_task(coord: LiveCoordinator, admin: httpx.Client, exit_status: int = 0) -> tuple[str, str]:
    """Register a worker, claim the oldest Ready task, finish and commit it: (task uuid, worker uuid)."""
    w = admin.post("/workers", json={"tags": [], "labels": [], "groups": []}).json()
    with coord.client(w["token"]) as wc:
        got = wc.get("/workers/tasks").json()
        assert wc.post("/workers/tasks", json={"id": got["id"], "op": "Finish"}).status_code == 200
        r = wc.post(
            "/workers/tasks",
            json={"id": got["id"], "op": {"Commit": {"exit_status": exit_status, "msg": None}}},
        )
        assert r.status_code == 200, r.text
    return str(got["uuid"]), str(w["worker_id"])


def states(messages: list[Any]) -> list[str]:
    return [m.data["state"] for m in messages]


def test_task_lifecycle_events_in_order(live_coordinator: LiveCoordinator) -> None:
    token = live_coordinator.login()
    with (
        SseReader(live_coordinator.url, token, params={"kind": "task"}) as reader,
        live_coordinator.admin() as c,
    ):
        reader.wait_connected()
        task = submit(c, labels=["exp", "sweep"])
        done, _ = run_task(live_coordinator, c, exit_status=256)
        assert done == task
        got = reader.take(4)
    assert states(got) == ["Ready", "Running", "Finished", "Finished"]
    ids = [int(m.id or 0) for m in got]
    assert ids == sorted(ids) and len(set(ids)) == 4
    first = got[0].data
    assert first["uuid"] == task and first["group"] == "mitosis_admin" and first["kind"] == "task"
    assert sorted(first["labels"]) == ["exp", "sweep"]
    assert WIRE_TIME.match(first["time"]), first["time"]
    assert all(m.event == "task" for m in got)
    committed = got[3].data["data"]
    assert committed["committed"] is True and committed["result"] == {"exit_status": 256, "msg": None}
    assert reader.status == 200


def test_the_status_line_comes_after_the_start_is_fixed(pg_url: str, tmp_path: Path) -> None:
    """A client that acts as soon as it has its 200 sees every event its action causes.

    While another transaction holds the events table, the stream cannot decide where it starts;
    its status line must wait for that too (were it sent first, the start would be decided later,
    after the client's action, and the action's events would be skipped).
    """
    locked, release = threading.Event(), threading.Event()

    async def hold_lock() -> None:
        conn = await asyncpg.connect(pg_url)
        try:
            async with conn.transaction():
                await conn.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
                locked.set()
                await asyncio.get_running_loop().run_in_executor(None, release.wait, 30)
        finally:
            await conn.close()

    with inprocess_coordinator(tmp_path / "c", pg_url) as coord, coord.admin() as c:
        headers = {"Authorization": f"Bearer {coord.login()}"}
        with httpx.Client(base_url=coord.url, headers=headers, timeout=30) as http:
            holder = threading.Thread(target=asyncio.run, args=(hold_lock(),))
            holder.start()
            try:
                assert locked.wait(10)
                with concurrent.futures.ThreadPoolExecutor(1) as pool:
                    opening = pool.submit(http.send, http.build_request("GET", "/events"), stream=True)
                    done, _ = concurrent.futures.wait([opening], timeout=1.0)
                    assert not done, "the 200 was sent before the stream's start was known"
                    release.set()
                    r = opening.result(timeout=20)
                assert r.status_code == 200
                task = submit(c)  # before a single byte of the body was read
                data = next(line for line in r.iter_lines() if line.startswith("data:"))
                r.close()
                assert f'"uuid":"{task}"' in data and '"state":"Ready"' in data, data
            finally:
                release.set()
                holder.join(30)


def test_filters(live_coordinator: LiveCoordinator) -> None:
    coord = live_coordinator
    token = coord.login()
    with coord.admin() as c:
        assert c.post("/groups", json={"group_name": "other"}).status_code == 200
        keep = submit(c, labels=["a", "b"])
        params: dict[str, Any] = {
            "labels": ["a", "b"],
            "group": ["mitosis_admin"],
            "state": ["ready"],
        }
        with (
            SseReader(coord.url, token, params=params) as by_labels,
            SseReader(coord.url, token, params={"task": keep}) as by_task,
            SseReader(coord.url, token, params={"kind": "worker"}) as by_kind,
            SseReader(coord.url, token, params={"group": "other"}) as by_group,
        ):
            for r in (by_labels, by_task, by_kind, by_group):
                r.wait_connected()
            submit(c, labels=["a"])  # lacks label b
            wanted = submit(c, labels=["a", "b", "c"])
            submit(c, group="other", labels=["a", "b"])  # other group
            c.put(f"/tasks/{keep}/labels", json={"labels": ["z"]})
            run_task(coord, c)  # claims `keep`: Running / Finished events
            assert [m.data["uuid"] for m in by_labels.take(1)] == [wanted]
            assert by_labels.quiet(0.5) == []
            # The label change is an event of the task too (state unchanged).
            assert states(by_task.take(4)) == ["Ready", "Running", "Finished", "Finished"]
            worker_events = by_kind.take(1)
            assert worker_events[0].event == "worker" and worker_events[0].data["state"] == "registered"
            other = by_group.take(1)
            assert other[0].data["group"] == "other"
            assert by_group.quiet(0.3) == []
    with coord.client(token) as c:
        assert c.get("/events", params={"kind": "job"}).status_code == 400
        assert c.get("/events", params={"task": "not-a-uuid"}).status_code == 400
        assert c.get("/events", params={"task": str(uuid.uuid4())}).status_code == 404


def test_state_filter_alone(live_coordinator: LiveCoordinator) -> None:
    coord = live_coordinator
    token = coord.login()
    with (
        coord.admin() as c,
        SseReader(coord.url, token, params={"state": "finished"}) as finished,
        SseReader(coord.url, token, params={"state": ["Running", "removed"]}) as mixed,
    ):
        for r in (finished, mixed):
            r.wait_connected()
        submit(c)
        task, worker = run_task(coord, c)
        w = c.post("/workers/query", json={}).json()["workers"]
        assert any(x["worker_id"] == worker for x in w)
        assert c.delete(f"/workers/{worker}").status_code == 200
        got = finished.take(2)
        assert [(m.data["uuid"], m.data["state"]) for m in got] == [(task, "Finished")] * 2
        assert [m.data["data"] for m in got] == [
            None,
            {"committed": True, "result": {"exit_status": 0, "msg": None}},
        ]
        assert finished.quiet(0.5) == []
        running, removed = mixed.take(2)
        assert (running.event, running.data["uuid"], running.data["state"]) == ("task", task, "Running")
        assert (removed.event, removed.data["uuid"], removed.data["state"]) == ("worker", worker, "removed")
        assert mixed.quiet(0.3) == []


def test_reader_without_rights_gets_403_and_no_events(live_coordinator: LiveCoordinator) -> None:
    coord = live_coordinator
    bob = coord.create_user("bob", "bob-password")
    with coord.admin() as c:
        secret_task = submit(c)
        with SseReader(coord.url, bob, params={"group": "mitosis_admin"}) as denied:
            denied.wait_connected()
            assert denied.status == 403
            assert b"Permission denied" in denied.body
            assert denied.messages.empty()
        with coord.client(bob) as b:
            assert b.get("/events", params={"task": secret_task}).status_code == 403
            assert b.get("/events", params={"group": "no_such_group"}).status_code == 403
        with SseReader(coord.url, bob) as mine:
            mine.wait_connected()
            submit(c)  # admin's group: bob must not see it
            with coord.client(bob) as b:
                own = submit(b, group="bob")
            got = mine.take(1)
            assert got[0].data["uuid"] == own
            assert mine.quiet(0.3) == []


def test_last_event_id_replay_loses_nothing(live_coordinator: LiveCoordinator) -> None:
    coord = live_coordinator
    token = coord.login()
    with coord.admin() as c:
        with SseReader(coord.url, token) as first:
            first.wait_connected()
            # Without Last-Event-ID there is nothing to replay: live at once, before any event.
            assert first.replay() == []
            submit(c)
            last = first.take(1)[0].id
        # Changes made while nobody listens.
        missed = [submit(c, labels=[f"n{i}"]) for i in range(5)]
        with SseReader(coord.url, token, headers={"Last-Event-ID": str(last)}) as again:
            # The replay ends with the ': live <id>' marker naming the newest event it covered.
            replay = again.replay()
            assert again.comments[-1] == f"live {replay[-1].id}"
            live = submit(c)
            assert again.take(1)[0].data["uuid"] == live
        assert [m.data["uuid"] for m in replay] == missed
        with SseReader(coord.url, token, params={"last_event_id": last}) as by_query:
            assert [m.data["uuid"] for m in by_query.take(6)] == [*missed, live]


def test_reset_after_pruning_and_keepalive(tmp_path: Path) -> None:
    url = databases.sqlite_url(tmp_path)
    with inprocess_coordinator(tmp_path / "c", url, event_retention=1, event_heartbeat=0.3) as coord:
        token = coord.login()
        with coord.admin() as c:
            with SseReader(coord.url, token) as r:
                r.wait_connected()
                submit(c)
                old = int(r.take(1)[0].id or 0)
                submit(c)
                submit(c)
                r.take(2)
                time.sleep(0.8)
                assert "keep-alive" in r.comments
            time.sleep(2.5)  # everything older than 1 s is pruned, except the newest event
            with SseReader(coord.url, token, headers={"Last-Event-ID": str(old)}) as late:
                reset = late.get()
                assert reset.event == "reset" and reset.data["last_event_id"] == old
                fresh = submit(c)
                assert late.get().data["uuid"] == fresh
            with SseReader(coord.url, token, headers={"Last-Event-ID": "999999"}) as unknown:
                assert unknown.get().event == "reset"


def test_two_coordinators_share_events(pg_url: str, tmp_path: Path) -> None:
    with (
        inprocess_coordinator(tmp_path / "a", pg_url) as a,
        inprocess_coordinator(tmp_path / "b", pg_url) as b,
    ):
        # Both coordinators use the same database, so a token of one is valid on the other only if
        # they share the signing key: log in on each.
        with SseReader(b.url, b.login(), params={"kind": "task"}) as reader, a.admin() as c:
            reader.wait_connected()
            task = submit(c)
            run_task(a, c)
            got = reader.take(4)
        assert [m.data["uuid"] for m in got] == [task] * 4
        assert states(got) == ["Ready", "Running", "Finished", "Finished"]


_RAW_EVENT = """INSERT INTO events (created_at, kind, groups, task_uuid, worker_uuid, state, labels, data)
VALUES (now(), 'task', ARRAY['mitosis_admin'], $1, NULL, $2, ARRAY[]::text[], NULL)"""


def _raw_events(url: str, script: Any) -> None:
    """Run ``script(a, b)`` with two raw connections to the coordinator's PostgreSQL database."""

    async def go() -> None:
        a, b = await asyncpg.connect(url), await asyncpg.connect(url)
        try:
            await script(a, b)
        finally:
            await a.close()
            await b.close()

    asyncio.run(go())


def test_a_slow_transaction_s_events_are_not_skipped(pg_url: str, tmp_path: Path) -> None:
    """An event whose transaction commits long after a later id did is still streamed, in id order."""

    async def slow_then_fast(a: asyncpg.Connection, b: asyncpg.Connection) -> None:
        async with a.transaction():
            await a.execute(_RAW_EVENT, uuid.uuid4(), "Slow")  # the lower id, not committed yet
            await b.execute(_RAW_EVENT, uuid.uuid4(), "Fast")  # the higher id, committed at once
            await asyncio.sleep(4.5)  # longer than any grace period a reader could give it

    with inprocess_coordinator(tmp_path / "c", pg_url) as coord:
        token = coord.login()
        with (
            SseReader(coord.url, token) as live,
            SseReader(coord.url, token, params={"last_event_id": 0}) as old,
        ):
            live.wait_connected()
            old.replay()
            _raw_events(pg_url, slow_then_fast)
            for reader in (live, old):
                got = reader.take(2)
                assert [m.data["state"] for m in got] == ["Slow", "Fast"]
                assert int(got[0].id or 0) < int(got[1].id or 0)


def test_a_rolled_back_hole_is_passed_promptly(pg_url: str, tmp_path: Path) -> None:
    async def rolled_back_then_committed(a: asyncpg.Connection, b: asyncpg.Connection) -> None:
        tx = a.transaction()
        await tx.start()
        await a.execute(_RAW_EVENT, uuid.uuid4(), "Gone")
        await b.execute(_RAW_EVENT, uuid.uuid4(), "Kept")
        await asyncio.sleep(0.5)
        await tx.rollback()

    with (
        inprocess_coordinator(tmp_path / "c", pg_url) as coord,
        SseReader(coord.url, coord.login()) as reader,
    ):
        reader.wait_connected()
        _raw_events(pg_url, rolled_back_then_committed)
        [kept] = reader.take(1, timeout=10)  # not held back for the whole HOLE_LIMIT
        assert kept.data["state"] == "Kept"
        assert reader.quiet(0.5) == []


def test_a_live_stream_gets_a_change_whose_id_was_taken_before_it_opened(pg_url: str, tmp_path: Path) -> None:
    opened, commit = threading.Event(), threading.Event()

    async def open_across_the_stream_start(a: asyncpg.Connection, b: asyncpg.Connection) -> None:
        async with a.transaction():
            await a.execute(_RAW_EVENT, uuid.uuid4(), "Early")
            await b.execute(_RAW_EVENT, uuid.uuid4(), "Committed")
            opened.set()
            await asyncio.get_running_loop().run_in_executor(None, commit.wait, 30)

    with inprocess_coordinator(tmp_path / "c", pg_url) as coord:
        token = coord.login()
        writer = threading.Thread(target=_raw_events, args=(pg_url, open_across_the_stream_start))
        writer.start()
        try:
            assert opened.wait(10)
            with SseReader(coord.url, token) as reader:
                reader.wait_connected()
                commit.set()
                states = [m.data["state"] for m in reader.take(2)]
            # "Committed" happened before the stream opened: it may come along, after "Early".
            assert states == ["Early", "Committed"], states
        finally:
            commit.set()
            writer.join(30)
