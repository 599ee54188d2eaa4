"""Wake-ups for long-polls: in-process events, and PostgreSQL LISTEN/NOTIFY between coordinators.

A waiter takes the channel's current event *before* it looks at the database and then waits on it,
so a notification that lands between the look and the wait is never lost. Notifications carry no
data that matters: the database stays the source of truth and waiters always look again.

The one exception is a *hand-off*: a task waiter parked in this process may be given a task a
submission assigned to its worker in the submission's own statement (see
``services.tasks.submit_with_token``), which saves the idle worker the claim's round trip to the
database. The submitter first reserves the waiter (:meth:`Notifier.reserve`: no wake-up, timeout
or shutdown can then end its wait without an answer), runs the statement, and always answers: the
task, or ``0`` ("look again") when the worker could not take it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

TASKS = "mitosis_tasks"
SIGNALS = "mitosis_signals"
# EVENTS: a row was added to the ``events`` table (event stream); LOGS: live-log bytes arrived.
EVENTS = "mitosis_events"
LOGS = "mitosis_logs"
CHANNELS = (TASKS, SIGNALS, EVENTS, LOGS)
# Names this coordinator process in the NOTIFY payload of its submissions ("<count>@<origin>"): it
# has offered those tasks to its own waiters already, so its listener skips them.
ORIGIN = secrets.token_hex(6)


def submitted_payload(count: int) -> str:
    return f"{count}@{ORIGIN}"


@dataclass(frozen=True)
class Parked:
    """What a parked task waiter can take directly: a task for this worker (database id)."""

    worker_db_id: int
    keep_assigned: bool


Ticket = asyncio.Future[Any]
"""A task waiter's place in line: resolved with its remaining hops (an ``int``) when woken, or with
what a submission handed to it."""


async def _settled(fut: Ticket, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``fut`` without touching it; whether it is done.

    Two loop turns from ``fut``'s result to the waiter (``wait_for(shield(fut))`` took three, and
    three more objects): on the path of every hand-off and every wake-up of an idle worker."""
    if fut.done():
        return True
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    fut.add_done_callback(wake)
    timer = loop.call_later(timeout, wake)
    try:
        await waiter
    finally:
        timer.cancel()
        fut.remove_done_callback(wake)
    return fut.done()


class Notifier:
    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {ch: asyncio.Event() for ch in CHANNELS}
        self._line: collections.deque[Ticket] = collections.deque()
        self._parked: dict[Ticket, Parked] = {}
        self._reserved: set[Ticket] = set()
        self.closing = False
        self._listener: asyncio.Task[None] | None = None
        self._pg_dsn: str | None = None

    def current(self, channel: str) -> asyncio.Event:
        return self._events[channel]

    # Task waiters (long-polling fetches) stand in a line: a submission of n tasks wakes only the
    # n oldest, not every idle worker, and a woken worker that finds nothing it may run passes the
    # wake on to the next one (see services/workers.fetch). With 500 idle workers a submission thus
    # costs a handful of claim queries instead of 500.

    def ticket(self) -> Ticket:
        """Join the line of task waiters (before looking at the database, so no wake is missed)."""
        fut: Ticket = asyncio.get_running_loop().create_future()
        self._line.append(fut)
        return fut

    @staticmethod
    def leave(fut: Ticket) -> None:
        if not fut.done():
            fut.cancel()  # dropped lazily from the line by offer()

    def reserve(self) -> tuple[Ticket, Parked] | None:
        """The oldest waiter parked in :meth:`wait_ticket` that can take a task directly, taken out
        of the line for a hand-off; the caller must :meth:`answer` it, whatever happens."""
        while self._line and self._line[0].done():
            self._line.popleft()
        for fut in self._line:
            parked = self._parked.get(fut)
            if parked is not None and not fut.done():
                self._line.remove(fut)
                del self._parked[fut]
                self._reserved.add(fut)
                return fut, parked
        return None

    def answer(self, fut: Ticket, handed: object) -> None:
        """End a reservation: ``handed`` is the task given to the waiter, or ``0`` to make it look
        again (the submission was not its to take)."""
        self._reserved.discard(fut)
        if not fut.done():
            fut.set_result(handed)

    def offer(self, count: int, *, hops: int | None = None, skip: Ticket | None = None) -> None:
        """``count`` tasks became runnable: wake that many waiters, oldest first.

        Each woken waiter may pass its turn on ``hops`` more times (default: once around the
        current line), so a task only some workers may run still reaches one of them, and a
        turn nobody can use dies out instead of circling forever.
        """
        turns = len(self._line) if hops is None else hops
        kept = None
        while count > 0 and self._line:
            fut = self._line.popleft()
            if fut is skip:
                kept = fut
                continue
            if not fut.done():
                fut.set_result(turns)
                count -= 1
        if kept is not None:
            self._line.appendleft(kept)

    async def wait_ticket(
        self,
        fut: Ticket,
        timeout: float,
        gone: Callable[[], Awaitable[bool]] | None = None,
        parked: Parked | None = None,
    ) -> Any:
        """Wait for this waiter's turn (its remaining hops), a task handed to it (only with
        ``parked``: what it can take), or the timeout (None); ``gone`` checked every second."""
        if parked is not None and not fut.done():
            self._parked[fut] = parked
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while not self.closing:
                remaining = deadline - loop.time()
                if remaining <= 0 or await _settled(fut, min(remaining, 1.0) if gone else remaining):
                    break
                if gone is not None and await gone():
                    break
            if fut in self._reserved:  # (never a done ticket: answer() ends the reservation first)
                # A submission is handing this waiter a task right now: its answer is never dropped.
                return await fut
            return fut.result() if fut.done() and not fut.cancelled() else None
        finally:
            self._parked.pop(fut, None)

    def wake(self, channel: str) -> None:
        """Wake every waiter of ``channel`` (for task waiters: something other than a submission
        changed who may run what, e.g. a worker's tags, a re-queue)."""
        if channel == TASKS:
            self.offer(len(self._line), hops=0)
        event = self._events[channel]
        self._events[channel] = asyncio.Event()
        event.set()

    async def wait(
        self, event: asyncio.Event, timeout: float, gone: Callable[[], Awaitable[bool]] | None = None
    ) -> bool:
        """Wait until ``event`` fires (True) or ``timeout`` passes (False).

        ``gone`` is checked every second so a long-poll whose client hung up ends promptly instead
        of holding a slot (and, at shutdown, the server) for the whole wait.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.closing:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return event.is_set()
            try:
                await asyncio.wait_for(event.wait(), min(remaining, 1.0) if gone else remaining)
            except TimeoutError:
                if gone is not None and await gone():
                    return False
                continue
            return True
        return False

    def close_waiters(self) -> None:
        """Shutdown: every long-poll answers now, so the server can drain quickly."""
        self.closing = True
        for ch in CHANNELS:
            self.wake(ch)

    def start_pg_listener(self, dsn: str) -> None:
        self._pg_dsn = dsn
        self._listener = asyncio.create_task(self._listen_forever(dsn), name="pg-listen")

    async def _listen_forever(self, dsn: str) -> None:
        import asyncpg

        delay = 0.5
        while True:
            conn = None
            try:
                conn = await asyncpg.connect(dsn)
                for ch in CHANNELS:
                    await conn.add_listener(ch, self._on_pg_notify)
                log.info("listening for cross-coordinator notifications")
                delay = 0.5
                # Everything happened while we were away may have been missed: wake waiters once.
                for ch in CHANNELS:
                    self.wake(ch)
                while not conn.is_closed():
                    await asyncio.sleep(2)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("notification listener lost its connection (%s); retrying in %.1fs", exc, delay)
            finally:
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10)

    def _on_pg_notify(self, _conn: object, _pid: int, channel: str, payload: str) -> None:
        count, _, origin = payload.partition("@")
        if channel == TASKS and count.isdigit():
            if origin != ORIGIN:
                self.offer(int(count))  # a submission elsewhere: that many tasks to take
        elif channel in self._events:
            self.wake(channel)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
