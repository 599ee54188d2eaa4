"""A watchdog process that kills the running task's process group if the worker dies abruptly.

Tasks run in sessions of their own (so that every kill reaches their whole tree), which also means
a SIGKILLed worker would leave its task running as an orphan: still writing files and, once the
coordinator re-queues the task after the heartbeat timeout, running alongside its second run.

The worker starts this watchdog once, as a child holding the read end of a pipe and an 8-byte
shared memory slot (a ``memfd`` both processes see). The worker writes the process-group id of each
task into the slot when it spawns it and ``0`` when the task has ended: a plain memory store, no
system call and no wake-up of the watchdog per task (the pipe messages they replaced cost about a
twelfth of the worker's CPU on a run of short tasks). When the pipe reaches end-of-file without a
clean ``exit`` line, the worker is gone: the watchdog reads the slot, kills that group with SIGKILL
and exits. It ignores SIGINT/SIGTERM so that a Ctrl-C or a stop sent to the worker's process group
cannot end it before the worker itself has cleaned up.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import signal
import subprocess
import sys

_SLOT = 8


def _read_slot(fd: int) -> int:
    return int.from_bytes(os.pread(fd, _SLOT, 0).ljust(_SLOT, b"\0"), "little", signed=True)


class Watchdog:
    """The worker's handle on its watchdog process (a no-op if it could not be started)."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._slot: mmap.mmap | None = None

    def start(self) -> None:
        fd = -1
        try:
            fd = os.memfd_create("mitosis-watchdog", os.MFD_CLOEXEC)
            os.ftruncate(fd, _SLOT)
            slot = mmap.mmap(fd, _SLOT)
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "mitosis.worker.watchdog", str(fd)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                close_fds=True,
                pass_fds=(fd,),
            )
            self._slot = slot
        except (OSError, AttributeError):  # no memfd (not Linux) or no process: run without one
            self._proc = None
        finally:
            if fd >= 0:
                os.close(fd)  # the mapping and the child's copy keep the memory

    def _set(self, pgid: int) -> None:
        if self._slot is not None:
            self._slot[:_SLOT] = pgid.to_bytes(_SLOT, "little", signed=True)

    def track(self, pgid: int) -> None:
        self._set(pgid)

    def untrack(self) -> None:
        self._set(0)

    def close(self) -> None:
        """Clean shutdown: the watchdog exits without killing anything."""
        if self._proc is None:
            return
        self._set(0)
        with contextlib.suppress(OSError, ValueError):
            if self._proc.stdin is not None:
                self._proc.stdin.write(b"exit\n")
                self._proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=5)
        self._proc = None
        if self._slot is not None:
            self._slot.close()
            self._slot = None


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    fd = int(sys.argv[1])
    for raw in sys.stdin.buffer:
        if raw.strip() == b"exit":
            return
    pgid = _read_slot(fd)
    if pgid > 0:
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)


if __name__ == "__main__":
    main()
