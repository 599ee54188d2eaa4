"""The line of task waiters: a submission wakes as many waiters as tasks, and turns die out."""

from __future__ import annotations

import asyncio

from mitosis.coordinator.events.notifier import TASKS, Notifier


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
