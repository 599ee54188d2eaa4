"""wait_any and Flag: the first of futures, flags, plain events and a timeout wakes the waiter,
and nothing stays registered afterwards."""

from __future__ import annotations

import asyncio
import time

import pytest

from mitosis.worker.wakeup import Flag, wait_any


async def test_flag_is_an_event_with_callbacks() -> None:
    flag, calls = Flag(), []
    forget = flag.on_set(lambda: calls.append("a"))
    flag.on_set(lambda: calls.append("b"))
    forget()
    flag.set()
    flag.set()  # a second set calls nothing again
    assert calls == ["b"] and flag.is_set()
    await asyncio.wait_for(flag.wait(), 1)  # still a working asyncio.Event
    flag.clear()
    assert not flag.is_set()


@pytest.mark.parametrize("which", ["future", "flag", "event"])
async def test_the_first_thing_wakes_the_waiter(which: str) -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[int] = loop.create_future()
    flag, event = Flag(), asyncio.Event()
    trigger = {"future": lambda: fut.set_result(1), "flag": flag.set, "event": event.set}[which]
    loop.call_later(0.05, trigger)
    started = time.monotonic()
    await wait_any((fut,), (flag, event), timeout=10)
    assert time.monotonic() - started < 5
    assert (fut.done(), flag.is_set(), event.is_set()) == (
        which == "future",
        which == "flag",
        which == "event",
    )
    # Nothing left behind: no callback on the flag, none on the future, no pending waiter task.
    assert flag._callbacks == []
    assert not fut._callbacks  # type: ignore[attr-defined]
    await asyncio.sleep(0)
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert pending == []


async def test_timeout_and_already_done() -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[int] = loop.create_future()
    flag = Flag()
    started = time.monotonic()
    await wait_any((fut,), (flag,), timeout=0.05)
    assert 0.04 <= time.monotonic() - started < 5 and not fut.done() and not flag.is_set()
    assert flag._callbacks == [] and not fut._callbacks  # type: ignore[attr-defined]

    flag.set()
    await asyncio.wait_for(wait_any((fut,), (flag,)), 1)  # already set: returns without a timeout
    done: asyncio.Future[int] = loop.create_future()
    done.set_result(0)
    await asyncio.wait_for(wait_any((done,), (Flag(),)), 1)


async def test_a_cancelled_waiter_forgets_its_callbacks() -> None:
    flag = Flag()
    waiter = asyncio.ensure_future(wait_any((), (flag,)))
    await asyncio.sleep(0.01)
    assert len(flag._callbacks) == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert flag._callbacks == []
