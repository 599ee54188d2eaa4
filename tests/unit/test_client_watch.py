"""``tasks watch``'s board: which events make it query again, and how far it grows."""

from __future__ import annotations

import uuid as uuidlib
from datetime import UTC, datetime
from typing import Any

from mitosis.client.commands.live import _Board
from mitosis.client.stream import Event
from mitosis.wire import models as m
from mitosis.wire.enums import TaskState

NOW = datetime(2026, 12, 3, tzinfo=UTC)


def _task(uuid: str, labels: list[str], state: str = "Ready") -> m.TaskQueryInfo:
    return m.TaskQueryInfo(
        uuid=uuidlib.UUID(uuid),
        creator_username="ann",
        group_name="ann",
        task_id=1,
        tags=[],
        labels=labels,
        created_at=NOW,
        updated_at=NOW,
        state=TaskState(state),
        timeout=60,
        priority=0,
        spec={"args": ["true"]},
    )


class FakeClient:
    """Answers queries with whatever ``tasks`` holds, counting them."""

    def __init__(self) -> None:
        self.tasks: list[m.TaskQueryInfo] = []
        self.queries = 0

    def query_tasks(self, req: m.TasksQueryReq) -> m.TasksQueryResp:
        self.queries += 1
        match = [t for t in self.tasks if not req.labels or set(req.labels) <= set(t.labels)]
        return m.TasksQueryResp(count=len(match), tasks=match[: req.limit], group_name="ann")


def _event(uuid: str, state: str, labels: list[str]) -> Event:
    data: dict[str, Any] = {"uuid": uuid, "state": state, "labels": labels, "group": "ann"}
    return Event(id=1, type="task", data=data)


U = [str(uuidlib.UUID(int=i + 1)) for i in range(4)]


def test_a_new_matching_task_joins_and_a_non_matching_one_costs_one_query() -> None:
    client = FakeClient()
    client.tasks = [_task(U[0], ["w"])]
    req = m.TasksQueryReq(labels={"w"}, limit=10)
    board = _Board(client.query_tasks(req), req)
    assert list(board.rows) == [U[0]] and client.queries == 1

    client.tasks.insert(0, _task(U[1], ["w"]))
    assert board.newcomers(_event(U[1], "Ready", ["w"]), client) == [U[1]]
    assert list(board.rows) == [U[0], U[1]] and client.queries == 2

    # Labels visible in the event rule a task out without a query.
    assert board.newcomers(_event(U[2], "Ready", ["other"]), client) == []
    assert client.queries == 2

    # A filter the event cannot judge (here: the fake's view of the task differs) costs one query
    # per (state, labels) the task shows, not one per event.
    client.tasks.append(_task(U[3], ["x"]))
    for _ in range(3):
        assert board.newcomers(_event(U[3], "Ready", ["w"]), client) == []
    assert client.queries == 3
    assert board.newcomers(_event(U[3], "Running", ["w"]), client) == []
    assert client.queries == 4 and U[3] not in board.rows


def test_the_board_stops_growing_at_the_limit_and_honours_the_state_filter() -> None:
    client = FakeClient()
    client.tasks = [_task(U[0], ["w"])]
    req = m.TasksQueryReq(labels={"w"}, states=[TaskState.Ready], limit=1)
    board = _Board(client.query_tasks(req), req)
    client.tasks.insert(0, _task(U[1], ["w"]))
    assert board.newcomers(_event(U[1], "Ready", ["w"]), client) == []
    assert list(board.rows) == [U[0]] and client.queries == 1

    wide = m.TasksQueryReq(labels={"w"}, states=[TaskState.Ready], limit=5)
    board = _Board(m.TasksQueryResp(count=0, tasks=[], group_name="ann"), wide)
    assert board.newcomers(_event(U[1], "Running", ["w"]), client) == []
    assert client.queries == 1  # a Running task cannot match states=Ready: no query
