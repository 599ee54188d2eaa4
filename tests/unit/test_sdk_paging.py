"""query_all_*'s offset paging against a result that changes while it is read (0.6.8 has no
cursor): rows that stay in the result are all listed, once, in the coordinator's order."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable

from mitosis.client.sdk import _Merged
from mitosis.wire import models as m


def _task(i: int) -> m.TaskQueryInfo:
    return m.TaskQueryInfo.model_validate(
        {
            "uuid": str(uuid.UUID(int=i + 1)),
            "creator_username": "u",
            "group_name": "g",
            "task_id": i,
            "tags": [],
            "labels": [],
            "created_at": "2026-12-04T00:00:00Z",
            "updated_at": "2026-12-04T00:00:00Z",
            "state": "Ready",
            "timeout": 60,
            "priority": 0,
            "spec": {"args": ["true"]},
        }
    )


def _read_all(
    server: list[m.TaskQueryInfo], page: int, between: Callable[[int], None], offset: int = 0
) -> tuple[list[m.TaskQueryInfo], int]:
    """The SDK's loop: pages of ``page`` from ``merged.offset`` until the merge says it is done;
    ``between(n)`` changes the server's rows after the n-th page was read."""
    merged: _Merged[m.TaskQueryInfo] = _Merged(offset)
    calls = 0
    while True:
        rows = server[merged.offset : merged.offset + page]
        calls += 1
        assert calls < 1000, "the read does not end"
        if merged.add(rows, page):
            return merged.rows, calls
        between(calls)


def test_a_still_result_is_read_once_in_order() -> None:
    server = [_task(i) for i in range(95)]
    rows, calls = _read_all(server, 10, lambda _n: None)
    assert [r.task_id for r in rows] == list(range(95))
    assert calls == 11  # 9 rows of overlap per page after the first: 10, then 9 new rows a page


def test_rows_leaving_the_result_do_not_hide_the_ones_that_stay() -> None:
    server = [_task(i) for i in range(200)]
    left: set[int] = set()

    def leave(n: int) -> None:
        # After the first, third and fifth requests, 12 rows near the top (already read) stop
        # matching: every later row moves up by 12, six times the page's overlap of 2.
        if n in (1, 3, 5):
            for _ in range(12):
                gone = server.pop(n)
                left.add(gone.task_id)

    rows, _ = _read_all(server, 20, leave)
    stayed = [i for i in range(200) if i not in left]
    got = [r.task_id for r in rows]
    assert [i for i in got if i in set(stayed)] == stayed  # every row that stayed, in order
    assert len(got) == len(set(got))  # none twice


def test_rows_leaving_past_the_end_of_the_result() -> None:
    server = [_task(i) for i in range(40)]

    def leave(n: int) -> None:
        if n == 2:  # after the second page, 15 rows already read stop matching
            del server[5:20]

    rows, _ = _read_all(server, 20, leave)
    # The third page would start at 36, past the 25 rows left: the read goes back, not home.
    assert [r.task_id for r in rows] == list(range(40))


def test_rows_arriving_at_the_top_are_not_listed_twice() -> None:
    server = [_task(i) for i in range(50)]
    fresh = itertools.count(1000)

    def arrive(_n: int) -> None:
        for _ in range(5):  # new tasks are listed first: everything read moves down
            server.insert(0, _task(next(fresh)))

    rows, calls = _read_all(server, 10, arrive)
    got = [r.task_id for r in rows]
    assert len(got) == len(set(got))
    assert [i for i in got if i < 1000] == list(range(50))
    assert calls < 30


def test_constant_churn_still_ends_and_an_offset_is_a_floor() -> None:
    server = [_task(i) for i in range(300)]

    def churn(n: int) -> None:
        del server[:15]  # more than any back-off covers: the read goes on as it is

    rows, calls = _read_all(server, 10, churn)
    assert rows and calls < 100
    server = [_task(i) for i in range(30)]
    rows, _ = _read_all(server, 4, lambda _n: None, offset=25)
    assert [r.task_id for r in rows] == [25, 26, 27, 28, 29]


def test_small_pages() -> None:
    server = [_task(i) for i in range(7)]
    assert [r.task_id for r in _read_all(server, 1, lambda _n: None)[0]] == list(range(7))
    assert [r.task_id for r in _read_all(server, 2, lambda _n: None)[0]] == list(range(7))
