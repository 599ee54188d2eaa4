"""The line of task waiters: a submission wakes as many waiters as tasks, and turns die out."""

from __future__ import annotations

import asyncio

from mitosis.coordinator.events.notifier import TASKS, Notifier, Parked, Ticket


async def test_offer_wakes_oldest_waiters_only() -> None:
    n = Notifier()
    tickets = [n.ticket() for _ in range(5)]
    n.offer(2)
    assert [t.done() for t in tickets] == [True, True, False, False, False]
    # Each woken waiter may pass its turn once around the line as it was (5 waiters).
    assert tickets[0].result() == 5


async def test_cancelled_waiters_are_skipped() -> None:
    n = Notifier()
    first, second = n.ticket(), n.ticket()
    n.leave(first)
    n.offer(1)
    assert first.cancelled() and second.done()


async def test_passing_a_turn_skips_the_passer_and_counts_down() -> None:
    n = Notifier()
    mine = n.ticket()
    other = n.ticket()
    n.offer(1, hops=3, skip=mine)
    assert not mine.done() and other.result() == 3
    # The passer stays first in line for the next real submission.
    n.offer(1)
    assert mine.done()


async def test_wake_all_gives_no_turns_to_pass() -> None:
    n = Notifier()
    tickets = [n.ticket() for _ in range(3)]
    n.wake(TASKS)
    assert [t.result() for t in tickets] == [0, 0, 0]


async def test_wait_ticket_times_out_and_reports_turns() -> None:
    n = Notifier()
    t = n.ticket()
    assert await n.wait_ticket(t, 0.05) is None
    n.leave(t)  # as a fetch does when its wait ends empty-handed
    t2 = n.ticket()
    asyncio.get_running_loop().call_later(0.01, n.offer, 1)
    turns = await n.wait_ticket(t2, 5)
    assert turns is not None and turns >= 1


async def test_close_waiters_releases_everyone() -> None:
    n = Notifier()
    t = n.ticket()
    task = asyncio.create_task(n.wait_ticket(t, 30))
    await asyncio.sleep(0)
    n.close_waiters()
    assert await asyncio.wait_for(task, 2) is not None


async def test_a_coordinators_own_submissions_are_not_offered_twice() -> None:
    from mitosis.coordinator.events.notifier import submitted_payload

    n = Notifier()
    waiters = [n.ticket() for _ in range(3)]
    n._on_pg_notify(None, 0, TASKS, submitted_payload(2))  # our own: offered in-process already
    assert not any(w.done() for w in waiters)
    n._on_pg_notify(None, 0, TASKS, "2@another-coordinator")
    assert [w.done() for w in waiters] == [True, True, False]
    n._on_pg_notify(None, 0, TASKS, "1")  # a payload without origin (an older coordinator)
    assert waiters[2].done()


# Hand-offs: a submission reserves a parked waiter, runs its statement, and always answers it.

PARKED = Parked(worker_db_id=7, keep_assigned=False)


async def _parked(n: Notifier, timeout: float = 30) -> tuple[Ticket, asyncio.Task[object]]:
    t = n.ticket()
    task = asyncio.create_task(n.wait_ticket(t, timeout, parked=PARKED))
    await asyncio.sleep(0)  # it is parked now
    return t, task


async def test_reserve_takes_the_oldest_parked_waiter_and_its_answer_is_delivered() -> None:
    n = Notifier()
    in_flight = n.ticket()  # took its ticket but is still looking at the database: not parked
    t1, w1 = await _parked(n)
    t2, w2 = await _parked(n)
    got = n.reserve()
    assert got is not None and got[0] is t1 and got[1] == PARKED
    n.offer(1)  # a reserved waiter is out of the line: this wakes the in-flight one, not t1
    assert in_flight.done() and not t1.done() and not t2.done()
    n.answer(t1, "the task")
    assert await asyncio.wait_for(w1, 2) == "the task"
    second = n.reserve()
    assert second is not None and second[0] is t2 and n.reserve() is None  # nobody parked is left
    n.answer(t2, 0)
    assert await asyncio.wait_for(w2, 2) == 0


async def test_a_reserved_waiter_outlives_its_timeout_and_a_shutdown_until_answered() -> None:
    n = Notifier()
    t, waiting = await _parked(n, timeout=0.05)
    assert n.reserve() is not None
    await asyncio.sleep(0.15)  # past its timeout
    n.close_waiters()
    await asyncio.sleep(0.05)
    assert not waiting.done()  # still waiting for the submission's answer: a task is never dropped
    n.answer(t, 0)
    assert await asyncio.wait_for(waiting, 2) == 0


async def test_a_waiter_that_gave_up_is_no_longer_reserved() -> None:
    n = Notifier()
    _, waiting = await _parked(n, timeout=0.02)
    assert await asyncio.wait_for(waiting, 2) is None
    assert n.reserve() is None  # timed out and unparked: nothing to hand a task to


async def test_a_waiter_without_parked_is_never_reserved() -> None:
    n = Notifier()
    t = n.ticket()
    waiting = asyncio.create_task(n.wait_ticket(t, 30))
    await asyncio.sleep(0)
    assert n.reserve() is None
    n.offer(1)
    assert await asyncio.wait_for(waiting, 2) == 1
