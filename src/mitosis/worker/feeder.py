"""Where a worker's tasks come from and where their results go, with the batched protocol.

With a coordinator that has ``POST /workers/batch`` the worker still runs one task at a time, but
its traffic is no longer three requests per task (fetch, Finish, Commit). A :class:`Feeder` runs
beside the task loop and, in one request at a time:

* commits the tasks that ended (``done``), a few at once while tasks keep coming, within
  :data:`FLUSH_AFTER` seconds of the first of them;
* claims tasks: one when idle (long-polling), and, while tasks are *short* (the last one ended
  within ``prefetch_short``), some ahead so that the next task starts without a round trip: as
  many as take about :data:`AHEAD_SECONDS` at the pace of the recent short tasks, at most
  ``prefetch``; the queue is topped up when it is half empty. A claim that comes back short of what it
  asked for means the queue ran dry: no more is claimed ahead until the running task ends (asking
  again and again while it runs would cost the coordinator and the database a claim each time,
  and take CPU from the task itself);
* gives back (``release``) the tasks claimed ahead as soon as the running one has taken longer than
  ``prefetch_short``: a long task never holds others back from idle workers for longer than that;
* tells the coordinator what it holds, so a claim whose answer was lost goes back to Ready, and
  learns which held tasks were cancelled by their user (queued ones end without running, the
  running one is stopped) or are no longer its own (dropped).

A request that carries results never long-polls: a worker stop cancels only requests that hold
nothing the coordinator would lose.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

from mitosis.wire.enums import TaskResultMessage
from mitosis.wire.models import (
    MAX_WORKER_BATCH,
    TaskResultSpec,
    WorkerBatchReq,
    WorkerBatchResp,
    WorkerTaskDone,
    WorkerTaskResp,
)
from mitosis.worker.api import ApiError, Backoff, CoordinatorApi, TransientError
from mitosis.worker.wakeup import Flag, wait_any

log = logging.getLogger(__name__)

FLUSH_AFTER = 0.25
"""Longest time a result waits for company before it is sent on its own."""

AHEAD_SECONDS = 1.0
"""About how much work (at the pace of the recent short tasks) a worker claims ahead: tasks of
1 ms are claimed ``prefetch`` at a time (fewer, larger requests), tasks of 90 ms ~11 at a time, so
that the tasks one worker holds back from the others at the end of a burst stay within a second."""

PACE_WEIGHT = 0.25
"""Weight of the latest short task in the running average of their durations."""

Committed = Callable[[], Awaitable[None]]


class BatchUnsupported(Exception):
    """The coordinator refused the batched protocol: use the per-task one."""


@dataclass
class _Pending:
    done: WorkerTaskDone
    on_committed: Committed | None = None


@dataclass
class _Request:
    req: WorkerBatchReq
    sent: list[_Pending] = field(default_factory=list)
    released: list[int] = field(default_factory=list)


class Feeder:
    """The task source and result sink of a worker's task loop (see the module docstring)."""

    def __init__(
        self,
        api: CoordinatorApi,
        *,
        prefetch: int,
        short: float,
        long_poll: timedelta | None,
        retry_cap: float,
        stop: asyncio.Event,
        give_up: Callable[[], bool],
        on_cancel: Callable[[int], None],
    ) -> None:
        self.api = api
        self.prefetch = max(1, prefetch)
        self.short = short
        self.long_poll = long_poll
        self.retry_cap = retry_cap
        self.stop = stop
        self.give_up = give_up
        self.on_cancel = on_cancel
        self.queue: collections.deque[WorkerTaskResp] = collections.deque()
        self.running: WorkerTaskResp | None = None
        self.running_since = 0.0
        self.last_short = False
        self.dry = False
        """The last claim got fewer tasks than it asked for: none is claimed ahead until a task ends."""
        self.pace: float | None = None
        """Running average of the short tasks' durations (seconds); None before the first one."""
        self._done: list[_Pending] = []
        self._done_since: float | None = None
        self._release: list[int] = []
        self._wake = Flag()
        self._ready = asyncio.Event()
        self.unsupported = False

    # ------------------------------------------------------------------- the task loop's side

    async def probe(self) -> bool:
        """Whether the coordinator speaks the batched protocol (an empty batch changes nothing)."""
        return await self.api.exchange(WorkerBatchReq()) is not None

    def pop(self) -> WorkerTaskResp | None:
        """The next task claimed ahead, marked running, or None when none is queued."""
        if not self.queue:
            return None
        task = self.queue.popleft()
        self.running = task
        self.running_since = time.monotonic()
        self._wake.set()
        return task

    async def next_task(self) -> WorkerTaskResp:
        """The next task to run (claimed ahead, or claimed for this call); marks it running.

        Raises :class:`BatchUnsupported` once the feeder loop has given up on the protocol."""
        while not self.queue:
            if self.unsupported:
                raise BatchUnsupported("the coordinator no longer answers POST /workers/batch")
            self._ready.clear()
            self._wake.set()
            await self._ready.wait()
        task = self.pop()
        assert task is not None
        return task

    def ended(self, task: WorkerTaskResp) -> None:
        """The running task is over (whatever became of it)."""
        if self.running is not None and self.running.id == task.id:
            took = time.monotonic() - self.running_since
            self.last_short = took < self.short
            if self.last_short:
                self.pace = took if self.pace is None else self.pace + PACE_WEIGHT * (took - self.pace)
            self.running = None
        self.dry = False
        self._wake.set()

    def complete(
        self, task_id: int, op: str, result: TaskResultSpec, on_committed: Committed | None = None
    ) -> None:
        """Queue a task's end (``Finish``/``Cancel``) and result for the next batch."""
        done = WorkerTaskDone.model_validate({"id": task_id, "op": op, "result": result})
        self._done.append(_Pending(done, on_committed))
        if self._done_since is None:
            self._done_since = time.monotonic()
        self._wake.set()

    # ------------------------------------------------------------------------ the feeder loop

    async def run(self) -> None:
        """Send batches until the worker stops; raises :class:`BatchUnsupported` on a refusal."""
        backoff = Backoff(self.retry_cap)
        while not self.stop.is_set():
            request = self._next_request()
            if request is None:
                await self._sleep()
                continue
            try:
                resp = await self._send(request)
            except TransientError as exc:
                self._unsend(request)
                log.warning("batch exchange failed: %s", exc)
                await backoff.sleep(self.stop)
                continue
            except (ApiError, BatchUnsupported):
                # Results already applied are refused as unknown (404) when sent again: no loss.
                self._unsend(request)
                raise
            if resp is None:
                self._unsend(request)
                if self.stop.is_set():
                    return
                continue
            backoff = Backoff(self.retry_cap)
            await self._apply(request, resp)

    async def drain(self, deadline: float) -> None:
        """At a stop: commit what ended and give back what was claimed ahead, retrying until
        ``deadline`` (monotonic); the unregistration that follows re-queues anything left."""
        self._release.extend(t.id for t in self.queue)
        self.queue.clear()
        backoff = Backoff(self.retry_cap)
        while self._done or self._release:
            request = self._build(fetch=0, wait=None, holding=[])
            try:
                resp = await self.api.exchange(request.req)
            except TransientError as exc:
                self._unsend(request)
                if time.monotonic() >= deadline:
                    log.error("%d task result(s) not reported before the stop: %s", len(self._done), exc)
                    return
                await backoff.sleep()
                continue
            except ApiError as exc:
                log.error("the last batch was refused (%s): %d result(s) not reported", exc, len(self._done))
                return
            if resp is None:
                return
            await self._apply(request, resp)

    def take_leftovers(self) -> tuple[list[tuple[WorkerTaskDone, Committed | None]], list[WorkerTaskResp]]:
        """Everything not yet sent (results, and tasks claimed ahead), for the per-task protocol."""
        done = [(p.done, p.on_committed) for p in self._done]
        queued = list(self.queue)
        self._done, self._done_since = [], None
        self._release.clear()  # tasks given back but not yet released: unregistration re-queues them
        self.queue.clear()
        return done, queued

    def _holding(self) -> list[int]:
        ids = [t.id for t in self.queue]
        return ids if self.running is None else [self.running.id, *ids]

    def _build(self, *, fetch: int, wait: timedelta | None, holding: list[int] | None) -> _Request:
        sent, self._done = self._done[:MAX_WORKER_BATCH], self._done[MAX_WORKER_BATCH:]
        released, self._release = self._release[:MAX_WORKER_BATCH], self._release[MAX_WORKER_BATCH:]
        self._done_since = time.monotonic() if self._done else None
        req = WorkerBatchReq(
            done=[p.done for p in sent], release=released, holding=holding, fetch=fetch, wait=wait
        )
        return _Request(req, sent, released)

    def _unsend(self, request: _Request) -> None:
        """A batch that did not get through: its results and releases go out with the next one."""
        self._done[:0] = request.sent
        self._release[:0] = request.released
        if self._done and self._done_since is None:
            self._done_since = time.monotonic()

    def _next_request(self) -> _Request | None:
        now = time.monotonic()
        busy = self.running is not None
        if busy and self.queue and now - self.running_since >= self.short:
            # The running task is long after all: what was claimed ahead goes back for others.
            self._release.extend(t.id for t in self.queue)
            self.queue.clear()
            self.last_short = False
        depth = self._depth()
        if not busy and not self.queue:
            if self._done or self._release:
                return self._build(fetch=depth, wait=None, holding=[])
            return self._build(fetch=depth, wait=self.long_poll, holding=[])
        fetch = 0
        ahead = depth > 1 and not self.dry and (not busy or now - self.running_since < self.short)
        if ahead and len(self.queue) <= depth // 2:
            fetch = depth - len(self.queue)
        # Results ride along with the refills; on their own only when many or old.
        due = self._done_since is not None and (
            len(self._done) >= self.prefetch or now - self._done_since >= FLUSH_AFTER
        )
        if fetch or due or self._release:
            return self._build(fetch=fetch, wait=None, holding=self._holding())
        return None

    def _depth(self) -> int:
        """How many tasks to hold (the running one's successors): one unless tasks are short, then
        about :data:`AHEAD_SECONDS` of them at their recent pace, at most ``prefetch``."""
        if not self.last_short:
            return 1
        if self.pace is None or self.pace * self.prefetch <= AHEAD_SECONDS:
            return self.prefetch
        return max(1, int(AHEAD_SECONDS / self.pace))

    async def _sleep(self) -> None:
        """Wait for something to do: a change from the task loop, a flush due, a long task."""
        self._wake.clear()
        deadlines = []
        if self._done_since is not None:
            deadlines.append(self._done_since + FLUSH_AFTER)
        if self.running is not None and self.queue:
            deadlines.append(self.running_since + self.short)
        timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        await wait_any((), (self._wake, self.stop), timeout)

    async def _send(self, request: _Request) -> WorkerBatchResp | None:
        """Send one batch; None when a stop cut a long-poll short (it carried nothing to lose)."""
        call = asyncio.ensure_future(self.api.exchange(request.req))
        if request.req.wait is None:
            resp = await call
        else:
            stopped = asyncio.ensure_future(self.stop.wait())
            try:
                await asyncio.wait({call, stopped}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopped.cancel()
            if not call.done():
                call.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await call
                return None
            resp = call.result()
        if resp is None:
            self.unsupported = True
            self._ready.set()
            raise BatchUnsupported("the coordinator has no POST /workers/batch")
        return resp

    async def _apply(self, request: _Request, resp: WorkerBatchResp) -> None:
        refused = {r.id: r for r in resp.refused}
        for r in resp.refused:
            if r.status == 404:
                log.info("result of task %d not taken: the task is no longer ours (%s)", r.id, r.msg)
            else:
                log.error("result of task %d refused: HTTP %d: %s", r.id, r.status, r.msg)
        for pending in request.sent:
            if pending.done.id not in refused and pending.on_committed is not None:
                await pending.on_committed()
        self.queue.extend(resp.tasks)
        if request.req.fetch:
            self.dry = len(resp.tasks) < request.req.fetch
        for task_id in resp.lost:
            self._drop(task_id, cancelled=False)
        for task_id in resp.cancel:
            self._drop(task_id, cancelled=True)
        if self.queue:
            self._ready.set()

    def _drop(self, task_id: int, *, cancelled: bool) -> None:
        """A held task the coordinator says to stop: cancelled by its user, or no longer ours."""
        if self.running is not None and self.running.id == task_id:
            self.on_cancel(task_id)
            return
        kept = [t for t in self.queue if t.id != task_id]
        if len(kept) == len(self.queue):
            return
        self.queue = collections.deque(kept)
        if cancelled:
            log.info("task %d cancelled by its user before it started", task_id)
            result = TaskResultSpec(exit_status=0, msg=TaskResultMessage.UserCancellation)
            self.complete(task_id, "Cancel", result)
        else:
            log.info("task %d is no longer ours: dropped before it started", task_id)
