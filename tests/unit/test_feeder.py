"""The worker's batch feeder against a scripted coordinator: what it asks for, when, and what it
does with the answers (claims ahead only for short tasks, gives back when a task runs long,
drops or cancels what the coordinator says, never loses a result on a failed exchange)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from mitosis.wire.enums import TaskResultMessage
from mitosis.wire.models import TaskResultSpec, WorkerBatchReq, WorkerBatchResp, WorkerTaskResp
from mitosis.worker import feeder as feeder_mod
from mitosis.worker.api import StatusError, TransientError
from mitosis.worker.feeder import BatchUnsupported, Feeder

OK = TaskResultSpec(exit_status=0)


def task(i: int) -> WorkerTaskResp:
    return WorkerTaskResp.model_validate(
        {"id": i, "uuid": str(uuid.UUID(int=i)), "timeout": "1m", "spec": {"args": ["true"]}}
    )


class FakeApi:
    """Answers each exchange with the next scripted reply (a callable of the request, or an error)."""

    def __init__(self) -> None:
        self.requests: list[WorkerBatchReq] = []
        self.replies: list[Callable[[WorkerBatchReq], WorkerBatchResp | None] | Exception] = []
        self.next_id = 1
        self.gate = asyncio.Event()
        self.gate.set()

    def hand_out(self, req: WorkerBatchReq) -> WorkerBatchResp:
        tasks = [task(self.next_id + k) for k in range(req.fetch)]
        self.next_id += req.fetch
        return WorkerBatchResp(tasks=tasks)

    async def exchange(self, req: WorkerBatchReq) -> WorkerBatchResp | None:
        await self.gate.wait()
        self.requests.append(req)
        reply: Any = self.replies.pop(0) if self.replies else self.hand_out
        if isinstance(reply, Exception):
            raise reply
        result: WorkerBatchResp | None = reply(req)
        return result


def make(api: FakeApi, stop: asyncio.Event, cancelled: list[int] | None = None, **kw: Any) -> Feeder:
    options: dict[str, Any] = {
        "prefetch": 8,
        "short": 0.2,
        "long_poll": timedelta(seconds=30),
        "retry_cap": 0.01,
        "stop": stop,
        "give_up": lambda: False,
        "on_cancel": (cancelled if cancelled is not None else []).append,
    }
    options.update(kw)
    return Feeder(api, **options)  # type: ignore[arg-type]


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_idle_worker_long_polls_for_one_then_claims_ahead_after_a_short_task() -> None:
    api, stop = FakeApi(), asyncio.Event()
    f = make(api, stop)
    loop = asyncio.create_task(f.run())
    first = await asyncio.wait_for(f.next_task(), 5)
    assert api.requests[0].fetch == 1 and api.requests[0].wait == timedelta(seconds=30)
    assert api.requests[0].holding == [] and api.requests[0].done == []
    f.complete(first.id, "Finish", OK)
    f.ended(first)  # ended at once: a short task
    second = await asyncio.wait_for(f.next_task(), 5)
    req = api.requests[1]
    assert [d.id for d in req.done] == [first.id] and req.wait is None  # results never long-poll
    assert req.fetch == 8  # the last task was short: claim ahead
    assert second.id == 2 and len(f.queue) == 7
    stop.set()
    await asyncio.wait_for(loop, 5)


async def test_a_long_task_gives_back_what_was_claimed_ahead() -> None:
    api, stop = FakeApi(), asyncio.Event()
    f = make(api, stop, short=0.05)
    f.last_short = True
    loop = asyncio.create_task(f.run())
    running = await asyncio.wait_for(f.next_task(), 5)
    assert api.requests[0].fetch == 8
    queued = [t.id for t in f.queue]
    assert len(queued) == 7
    await asyncio.sleep(0.2)  # the running task is long now
    await settle()
    release = [r for r in api.requests if r.release]
    assert release and release[0].release == queued and release[0].holding == [running.id]
    assert not f.queue and not f.last_short
    # While it still runs, nothing more is claimed ahead.
    count = len(api.requests)
    await asyncio.sleep(0.1)
    assert len(api.requests) == count
    stop.set()
    await asyncio.wait_for(loop, 5)


async def test_results_wait_for_company_but_not_for_long() -> None:
    api, stop = FakeApi(), asyncio.Event()
    f = make(api, stop, prefetch=8, short=5.0)
    f.last_short = True
    loop = asyncio.create_task(f.run())
    t1 = await asyncio.wait_for(f.next_task(), 5)
    f.ended(t1)
    t2 = await asyncio.wait_for(f.next_task(), 5)  # busy with t2, six more claimed ahead
    count = len(api.requests)
    f.complete(t1.id, "Finish", OK)
    await asyncio.sleep(feeder_mod.FLUSH_AFTER / 2)
    assert len(api.requests) == count  # not yet: a result alone waits for company
    await asyncio.sleep(feeder_mod.FLUSH_AFTER)
    assert [d.id for d in api.requests[-1].done] == [t1.id]
    assert api.requests[-1].holding == [t2.id, *(t.id for t in f.queue)]
    assert api.requests[-1].fetch == 0
    stop.set()
    await asyncio.wait_for(loop, 5)


async def test_prefetch_one_never_claims_ahead() -> None:
    api, stop = FakeApi(), asyncio.Event()
    f = make(api, stop, prefetch=1, short=5.0)
    f.last_short = True
    loop = asyncio.create_task(f.run())
    await asyncio.wait_for(f.next_task(), 5)
    await asyncio.sleep(0.1)
    assert [r.fetch for r in api.requests] == [1] and not f.queue
    stop.set()
    await asyncio.wait_for(loop, 5)


def hand_out_at_most(limit: int, api: FakeApi) -> Callable[[WorkerBatchReq], WorkerBatchResp]:
    """A coordinator with only ``limit`` tasks left to give."""

    def reply(req: WorkerBatchReq) -> WorkerBatchResp:
        return api.hand_out(req.model_copy(update={"fetch": min(req.fetch, limit)}))

    return reply


async def test_a_short_claim_stops_claiming_ahead_until_the_task_ends() -> None:
    api, stop = FakeApi(), asyncio.Event()
    f = make(api, stop, short=5.0)
    f.last_short = True  # tasks are short: the feeder would claim ahead
    api.replies = [hand_out_at_most(1, api)]
    loop = asyncio.create_task(f.run())
    first = await asyncio.wait_for(f.next_task(), 5)
    assert [r.fetch for r in api.requests] == [8] and f.dry
    # The queue ran dry: while the task runs, nobody asks for more (the old feeder asked again
    # at once, and again after each empty answer, for as long as the task stayed short).
    await asyncio.sleep(0.1)
    await settle()
    assert len(api.requests) == 1
    f.complete(first.id, "Finish", OK)
    f.ended(first)
    second = await asyncio.wait_for(f.next_task(), 5)
    assert [d.id for d in api.requests[1].done] == [first.id] and api.requests[1].fetch == 8
    assert second.id == 2 and len(f.queue) == 7 and not f.dry  # a full answer: there may be more
    stop.set()
    await asyncio.wait_for(loop, 5)


async def test_claims_ahead_about_a_second_of_work_at_the_recent_pace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(feeder_mod, "AHEAD_SECONDS", 1.0)
    api, stop = FakeApi(), asyncio.Event()
    f = make(api, stop, short=5.0)  # tasks under 5 s are short: each one below is
    loop = asyncio.create_task(f.run())
    first = await asyncio.wait_for(f.next_task(), 5)
    f.running_since -= 0.24  # it took 0.24 s: four such tasks make about a second
    f.complete(first.id, "Finish", OK)
    f.ended(first)
    assert f.last_short and f.pace is not None and 0.24 <= f.pace < 0.25
    await asyncio.wait_for(f.next_task(), 5)
    assert api.requests[1].fetch == 4  # not prefetch (8): that would hold ~2 s back from others
    # Quicker tasks bring the average down (0.24 + 0.25 * (0.04 - 0.24) = 0.19 s): five ahead.
    second = f.running
    assert second is not None
    f.running_since -= 0.04
    f.ended(second)
    assert f.pace is not None and 0.19 <= f.pace < 0.20
    assert f._depth() == 5
    # Tasks that end at once are claimed prefetch at a time: the pace bounds only slow ones.
    f.pace = 0.001
    assert f._depth() == 8
    # A long task (not short) leaves the average alone and claims no more ahead.
    third = f.pop()
    assert third is not None
    f.running_since -= 6.0
    f.ended(third)
    assert not f.last_short and f.pace == 0.001 and f._depth() == 1
    stop.set()
    await asyncio.wait_for(loop, 5)


async def test_a_failed_exchange_keeps_its_results_for_the_next_one() -> None:
    api, stop = FakeApi(), asyncio.Event()
    f = make(api, stop)
    loop = asyncio.create_task(f.run())
    t1 = await asyncio.wait_for(f.next_task(), 5)
    api.replies = [TransientError("down"), TransientError("still down")]
    f.complete(t1.id, "Finish", OK)
    f.ended(t1)
    t2 = await asyncio.wait_for(f.next_task(), 5)
    sent = [[d.id for d in r.done] for r in api.requests]
    assert sent[1:] == [[t1.id], [t1.id], [t1.id]]  # two failures, then through
    assert t2.id == 2
    stop.set()
    await asyncio.wait_for(loop, 5)


async def test_cancelled_and_lost_tasks() -> None:
    api, stop, cancelled = FakeApi(), asyncio.Event(), []
    f = make(api, stop, cancelled, short=5.0)
    f.last_short = True
    loop = asyncio.create_task(f.run())
    running = await asyncio.wait_for(f.next_task(), 5)
    queued = [t.id for t in f.queue]
    api.replies = [lambda req: WorkerBatchResp(cancel=[running.id, queued[0]], lost=[queued[1]])]
    f.complete(999, "Finish", OK)  # something to send
    await asyncio.sleep(feeder_mod.FLUSH_AFTER * 1.5)
    await settle()
    assert cancelled == [running.id]  # the running one is stopped by the task loop
    assert [t.id for t in f.queue] == queued[2:]  # the queued ones never start
    # The cancelled queued task is committed as cancelled by its user, without running.
    pending = {p.done.id: p.done for p in f._done}
    assert set(pending) == {queued[0]}
    assert pending[queued[0]].op == "Cancel"
    assert pending[queued[0]].result == TaskResultSpec(exit_status=0, msg=TaskResultMessage.UserCancellation)
    stop.set()
    await asyncio.wait_for(loop, 5)


async def test_drain_sends_results_and_gives_back_the_queue() -> None:
    api, stop = FakeApi(), asyncio.Event()
    f = make(api, stop)
    f.last_short = True
    loop = asyncio.create_task(f.run())
    running = await asyncio.wait_for(f.next_task(), 5)
    queued = [t.id for t in f.queue]
    stop.set()
    await asyncio.wait_for(loop, 5)
    f.complete(running.id, "Cancel", OK)
    f.ended(running)
    await f.drain(asyncio.get_running_loop().time() + 5)
    last = api.requests[-1]
    assert [d.id for d in last.done] == [running.id] and last.release == queued
    assert last.fetch == 0 and last.holding == []


async def test_a_stop_cuts_an_idle_long_poll_short() -> None:
    api, stop = FakeApi(), asyncio.Event()
    api.gate.clear()  # the coordinator holds the long-poll
    f = make(api, stop)
    loop = asyncio.create_task(f.run())
    await settle()
    stop.set()
    await asyncio.wait_for(loop, 5)
    assert api.requests == []


async def test_an_unsupported_coordinator_is_reported() -> None:
    api, stop = FakeApi(), asyncio.Event()
    api.replies = [lambda req: None]
    f = make(api, stop)
    with pytest.raises(BatchUnsupported):
        await asyncio.wait_for(f.run(), 5)
    assert f.unsupported
    with pytest.raises(BatchUnsupported):
        await f.next_task()


async def test_a_refused_batch_stops_the_loop_and_keeps_the_results() -> None:
    api, stop = FakeApi(), asyncio.Event()
    f = make(api, stop)
    loop = asyncio.create_task(f.run())
    t1 = await asyncio.wait_for(f.next_task(), 5)
    api.replies = [StatusError(403, "the user who registered this worker is no longer active")]
    f.complete(t1.id, "Finish", OK)
    f.ended(t1)
    with pytest.raises(StatusError):
        await asyncio.wait_for(loop, 5)
    done, queued = f.take_leftovers()
    assert [d.id for d, _ in done] == [t1.id] and queued == []
