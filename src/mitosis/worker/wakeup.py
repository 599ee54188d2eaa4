"""Waiting for the first of several things without a task per thing.

``asyncio.wait`` over ``event.wait()`` coroutines creates, schedules and cancels a task for each
event every time; the worker does that several times per task it runs (the process exit against
a stop, a cancel and the timeout; the feeder's sleep against its wake-up and a stop), which cost
about 25 µs each on the machines here. :class:`Flag` is an :class:`asyncio.Event` that can also
call back when set, and :func:`wait_any` waits on futures and flags with one future and
callbacks. A plain :class:`asyncio.Event` still works (it gets a waiter task, as before).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any


class Flag(asyncio.Event):
    """An :class:`asyncio.Event` whose :meth:`on_set` callbacks run when it is set."""

    def __init__(self) -> None:
        super().__init__()
        self._callbacks: list[Callable[[], None]] = []

    def set(self) -> None:
        if self.is_set():
            return
        super().set()
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def on_set(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` once, when the flag is next set; returns a function that forgets it."""
        self._callbacks.append(callback)

        def forget() -> None:
            try:
                self._callbacks.remove(callback)
            except ValueError:
                pass

        return forget


async def wait_any(
    futures: Iterable[asyncio.Future[Any]] = (),
    events: Iterable[asyncio.Event] = (),
    timeout: float | None = None,
) -> None:
    """Return when one of ``futures`` is done, one of ``events`` is set, or ``timeout`` seconds
    passed, whichever comes first. Nothing the caller passed is cancelled: it looks at what happened."""
    loop = asyncio.get_running_loop()
    wake: asyncio.Future[None] = loop.create_future()

    def fire(*_: object) -> None:
        if not wake.done():
            wake.set_result(None)

    undo: list[Callable[[], object]] = []
    try:
        for fut in futures:
            if fut.done():
                return
            fut.add_done_callback(fire)
            undo.append(lambda fut=fut: fut.remove_done_callback(fire))  # type: ignore[misc]
        for event in events:
            if event.is_set():
                return
            if isinstance(event, Flag):
                undo.append(event.on_set(fire))
            else:
                waiter = asyncio.ensure_future(event.wait())
                waiter.add_done_callback(fire)
                undo.append(waiter.cancel)
        if timeout is not None:
            undo.append(loop.call_later(max(0.0, timeout), fire).cancel)
        await wake
    finally:
        for forget in undo:
            forget()
