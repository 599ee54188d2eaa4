"""A watchdog process that kills the running task's process group if the worker dies abruptly.

Tasks run in sessions of their own (so that every kill reaches their whole tree), which also means
a SIGKILLed worker would leave its task running as an orphan: still writing files and, once the
coordinator re-queues the task after the heartbeat timeout, running alongside its second run.

The worker starts this watchdog once, as a child holding the read end of a pipe. The worker writes
the process-group id of each task when it spawns it and ``0`` when the task has ended. When the
pipe reaches end-of-file without a clean ``exit`` line, the worker is gone: the watchdog kills the
last announced group with SIGKILL and exits. It ignores SIGINT/SIGTERM so that a Ctrl-C or a stop
sent to the worker's process group cannot end it before the worker itself has cleaned up.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys


class Watchdog:
    """The worker's handle on its watchdog process (a no-op if it could not be started)."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with contextlib.suppress(OSError):
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "mitosis.worker.watchdog"],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                close_fds=True,
            )

    def _send(self, line: str) -> None:
        if self._proc is None or self._proc.stdin is None:
            return
        with contextlib.suppress(OSError, ValueError):
            self._proc.stdin.write(line.encode() + b"\n")
            self._proc.stdin.flush()

    def track(self, pgid: int) -> None:
        self._send(str(pgid))

    def untrack(self) -> None:
        self._send("0")

    def close(self) -> None:
        """Clean shutdown: the watchdog exits without killing anything."""
        if self._proc is None:
            return
        self._send("exit")
        with contextlib.suppress(OSError, ValueError):
            if self._proc.stdin is not None:
                self._proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=5)
        self._proc = None


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    pgid = 0
    for raw in sys.stdin.buffer:
        line = raw.strip()
        if line == b"exit":
            return
        with contextlib.suppress(ValueError):
            pgid = int(line)
    if pgid > 0:
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)


if __name__ == "__main__":
    main()
