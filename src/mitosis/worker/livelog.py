"""Live logs (our addition): streaming a running task's captured stdout/stderr to the coordinator.

The task writes its output straight into ``stdout.log`` / ``stderr.log`` (``executor.py``); a
:class:`LogStreamer` reads those files from its per-stream offsets and sends what is new with
``POST /workers/tasks/{id}/logs`` every :data:`BATCH_INTERVAL` seconds, at most one request
(:data:`MAX_REQUEST` bytes) in memory at a time. A backlog (a task printing faster than the
coordinator takes it) is sent back to back without waiting.

The files on disk are the buffer, so back-pressure costs no memory: a 429 (the task's unread log is
at the coordinator's cap) pauses the stream for ``Retry-After`` and the bytes are read again from
the returned offset later; a 409 (gap) rewinds or advances to the coordinator's stored end. A 404
means the task is no longer ours: streaming stops. A coordinator without the endpoint (405, or a
404 without our ``{"msg"}`` body) marks the streamer :attr:`~LogStreamer.unsupported`, and the
worker stops streaming for good.

After the process exits, :meth:`LogStreamer.finish` sends the tail, bounded by a deadline; while
flushing, back-pressure is waited out for at most :data:`FLUSH_BACKPRESSURE_SECONDS` in total, so a
task whose log nobody reads is not held back: its ``std-log`` artifact (packed from the same files,
hence byte-identical to what was streamed) is the complete record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from mitosis.worker.api import (
    Backoff,
    CoordinatorApi,
    ForcedExit,
    ProtocolError,
    StatusError,
    TransientError,
)

log = logging.getLogger(__name__)

BATCH_INTERVAL = 0.2
MAX_REQUEST = 1 << 20
MIN_REQUEST = 4096
FLUSH_SECONDS = 60.0
FLUSH_BACKPRESSURE_SECONDS = 5.0


class _Stop(Exception):
    """Streaming of this task ends (task gone, endpoint missing, flush budget spent)."""


class LogStreamer:
    """Streams the capture files of one task; :meth:`start`, then :meth:`finish` or :meth:`cancel`."""

    def __init__(
        self,
        api: CoordinatorApi,
        task_id: int,
        files: Mapping[str, Path],
        *,
        interval: float = BATCH_INTERVAL,
        max_request: int = MAX_REQUEST,
        retry_cap: float = 5.0,
    ) -> None:
        self.api = api
        self.task_id = task_id
        self.files = dict(files)
        self.offsets = dict.fromkeys(self.files, 0)
        self.unsupported = False
        self.requests = 0
        self._interval = interval
        self._max_request = max_request
        self._retry_cap = retry_cap
        self._exited = asyncio.Event()
        self._backpressure_left = FLUSH_BACKPRESSURE_SECONDS
        self._fds: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"live-log-{self.task_id}")

    async def finish(self, timeout: float = FLUSH_SECONDS) -> None:
        """The task process has exited: send the rest of its output (for at most ``timeout`` s)."""
        self._exited.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except TimeoutError:
            log.warning("task %d: live log tail not sent within %g s", self.task_id, timeout)
            await self.cancel()

    async def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._close_files()

    # ------------------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        try:
            while True:
                # Looked at before the pass: once the process has exited, a pass that leaves
                # nothing behind has sent every byte it wrote.
                final = self._exited.is_set()
                pending = await self._pass(final)
                if pending:
                    continue
                if final:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._exited.wait(), self._interval)
        except _Stop:
            return
        except OSError as exc:
            log.warning("task %d: live log stopped, cannot read the output: %s", self.task_id, exc)
        finally:
            self._close_files()

    async def _pass(self, final: bool) -> bool:
        """One request per stream with new output; True when more is waiting right away."""
        pending = False
        for stream in self.files:
            size = self._max_request
            data = await asyncio.to_thread(os.pread, self._fd(stream), size, self.offsets[stream])
            if not data:
                continue
            accepted = await self._send(stream, data, final)
            pending = pending or not accepted or len(data) == size
        return pending

    def _fd(self, stream: str) -> int:
        fd = self._fds.get(stream)
        if fd is None:
            fd = self._fds[stream] = os.open(self.files[stream], os.O_RDONLY)
        return fd

    def _close_files(self) -> None:
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()

    async def _send(self, stream: str, data: bytes, final: bool) -> bool:
        """Send ``data`` (found at the stream's offset); True when the coordinator stored it."""
        offset = self.offsets[stream]
        backoff = Backoff(self._retry_cap)
        while True:
            self.requests += 1
            try:
                reply = await self.api.upload_log(self.task_id, stream, offset, data)
                break
            except TransientError as exc:  # bounded by finish()'s deadline once the process exited
                log.debug("task %d: live log upload failed (%s); retrying", self.task_id, exc)
                await backoff.sleep()
            except StatusError as exc:
                self._refused(exc, len(data))
                return False
            except (ForcedExit, ProtocolError) as exc:
                log.warning("task %d: live log stopped: %s", self.task_id, exc)
                raise _Stop from None
        self.offsets[stream] = reply.offset
        if reply.status == 200:
            return reply.offset >= offset + len(data)
        if reply.status == 429:
            await self._back_off(reply.retry_after, final)
        return False

    def _refused(self, exc: StatusError, size: int) -> None:
        if exc.status == 413 and size > MIN_REQUEST:
            self._max_request = max(size // 2, MIN_REQUEST)
            return
        if exc.status == 405:
            self.unsupported = True
            raise _Stop
        if exc.status != 404:
            log.warning("task %d: live log refused: %s", self.task_id, exc)
        raise _Stop

    async def _back_off(self, retry_after: float, final: bool) -> None:
        """Wait out a 429; after the process exited only within the flush's back-pressure budget."""
        delay = max(retry_after, 0.05)
        if final:
            if self._backpressure_left <= 0:
                log.info("task %d: live log tail dropped (nobody reads it); std-log has it", self.task_id)
                raise _Stop
            delay = min(delay, self._backpressure_left)
            self._backpressure_left -= delay
        await asyncio.sleep(delay)
