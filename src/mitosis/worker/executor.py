"""Running one task process: spawn, environment, limits, output capture, timeout and kill.

The task runs as ``/usr/bin/env ARGS...`` would run it (see :meth:`TaskProcess.spawn`), in its own session (``start_new_session``), so it leads a
process group of its own and every kill (timeout, cancel, worker stop) reaches its whole tree: the
group first gets SIGTERM (or SIGKILL when stopping), the leader is waited for, and then the group
gets SIGKILL again so that children left behind in it do not outlive the task (0.6.8 signalled only
the direct child, behavior.md §11.3 S23).

Terminal output goes straight to files in the task directory rather than through pipes: memory
stays bounded, and what was written before a timeout survives it (S25). The working directory is
inherited from the worker, as in 0.6.8 (tasks written for 0.6.8 may rely on it).

``exit_status`` is the raw POSIX wait status, as on the wire: exit code c is ``c << 8``, death by
signal s is ``s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import resource
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mitosis.wire.models import ResourceLimits
from mitosis.worker.wakeup import wait_any

ENV_PROGRAM = "/usr/bin/env"
TERM_GRACE_SECONDS = 10.0
CANCEL_GRACE_SECONDS = 1.0

RESERVED_ENV = (
    "MITO_RESULT_DIR",
    "MITO_EXEC_DIR",
    "MITO_RESOURCE_DIR",
    "MITO_TASK_UUID",
    "MITO_NEW_TASK",
    "MITO_UPSTREAM_TASK_UUID",
)


def install_child_watcher() -> None:
    """Use a pidfd child watcher on 3.11 (3.12+ does so by default): no thread per child.

    Call it from inside the worker's own running loop (``mito worker``), not from a loop shared with
    other code: on 3.11 the watcher is process-wide and bound to the loop it is attached to.
    """
    if sys.version_info >= (3, 12) or not hasattr(asyncio, "PidfdChildWatcher"):
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return  # kernel without pidfd: keep the default threaded watcher
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(asyncio.get_running_loop())
    asyncio.set_child_watcher(watcher)


def task_env(
    base: Mapping[str, str],
    spec_envs: Mapping[str, str],
    mito: Mapping[str, str],
) -> dict[str, str]:
    """Worker env, then the task's envs without ``MITO_*``, then the task's ``MITO_*`` values."""
    env = {k: v for k, v in base.items() if k not in RESERVED_ENV}
    env.update({k: v for k, v in spec_envs.items() if not k.startswith("MITO_")})
    env.update(mito)
    return env


def mito_env(task_dir: str, task_uuid: str, upstream_uuid: str | None = None) -> dict[str, str]:
    """The ``MITO_*`` variables of a task run in ``task_dir`` (plain string joins: once per task)."""
    mito = {
        "MITO_RESULT_DIR": task_dir + "/result",
        "MITO_EXEC_DIR": task_dir + "/exec",
        "MITO_RESOURCE_DIR": task_dir + "/resource",
        "MITO_TASK_UUID": task_uuid,
        "MITO_NEW_TASK": task_dir + "/new_task.json",
    }
    if upstream_uuid is not None:
        mito["MITO_UPSTREAM_TASK_UUID"] = upstream_uuid
    return mito


def _has_pidfd() -> bool:
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return False
    return hasattr(os, "posix_spawn")


_PIDFD = _has_pidfd()
_devnull_fd: int | None = None
_resolved: dict[tuple[str, str], str] = {}


def _devnull() -> int:
    """One /dev/null descriptor for every task's stdin and discarded output (opened once)."""
    global _devnull_fd
    if _devnull_fd is None:
        _devnull_fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    return _devnull_fd


def resolve_program(name: str, env: Mapping[str, str]) -> str | None:
    """Where ``execvp`` would find ``name`` with the task's PATH, or None (then ``env`` decides).

    Found paths are remembered per (name, PATH) while they remain executable files."""
    if not name:
        return None
    if "/" in name:
        return name
    search = env.get("PATH", "/bin:/usr/bin")
    key = (name, search)
    known = _resolved.get(key)
    if known is not None and os.access(known, os.X_OK):
        return known
    for folder in search.split(":"):
        candidate = os.path.join(folder or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            if len(_resolved) > 1024:
                _resolved.clear()
            _resolved[key] = candidate
            return candidate
    return None


def raw_wait_status(returncode: int) -> int:
    """asyncio's returncode (negative for a signal) back to the raw wait status 0.6.8 reports."""
    return -returncode if returncode < 0 else returncode << 8


def _limits_preexec(limits: ResourceLimits) -> Callable[[], None]:
    pairs: list[tuple[int, int]] = []
    if limits.cpu_seconds is not None:
        pairs.append((resource.RLIMIT_CPU, limits.cpu_seconds))
    if limits.memory_bytes is not None:
        pairs.append((resource.RLIMIT_AS, limits.memory_bytes))
    if limits.open_files is not None:
        pairs.append((resource.RLIMIT_NOFILE, limits.open_files))
    if limits.processes is not None:
        pairs.append((resource.RLIMIT_NPROC, limits.processes))

    def apply() -> None:
        for which, value in pairs:
            _soft, hard = resource.getrlimit(which)
            capped = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(which, (capped, capped))

    return apply


class Outcome(enum.Enum):
    FINISHED = "finished"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    STOPPED = "stopped"


@dataclass(frozen=True)
class ExecResult:
    outcome: Outcome
    exit_status: int


class _Child(Protocol):
    pid: int

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...


class _PidfdChild:
    """A child started with ``os.posix_spawn``, reaped when its pidfd becomes readable.

    Cheaper than asyncio's subprocess machinery (transport, protocol, Popen) for the common task
    with no resource limits; asyncio's pidfd watcher never sees this pid, so nothing else reaps it."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._returncode: int | None = None
        self._loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[int] = self._loop.create_future()
        self._pidfd = os.pidfd_open(pid)
        self._loop.add_reader(self._pidfd, self._reap)

    @property
    def returncode(self) -> int | None:
        return self._returncode

    def _reap(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = self.pid, 255 << 8
        if pid == 0:
            return
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._returncode = os.waitstatus_to_exitcode(status)
        if not self._exited.done():
            self._exited.set_result(self._returncode)

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    def exit_future(self) -> asyncio.Future[int]:
        return self._exited


def _posix_spawn(
    program: str, args: Sequence[str], env: Mapping[str, str], fds: tuple[int, int, int]
) -> int | None:
    """Start ``program`` in a new session with ``fds`` as stdin/out/err; None when it cannot be
    (then the caller goes through ``env``)."""
    actions = [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(fds)]
    try:
        return os.posix_spawn(program, list(args), dict(env), file_actions=actions, setsid=True)
    except OSError:
        return None


class TaskProcess:
    """A spawned task: its process group and the means to end it."""

    def __init__(self, proc: _Child) -> None:
        self._proc = proc
        self.pid = proc.pid

    @classmethod
    async def spawn(
        cls,
        args: Sequence[str],
        env: Mapping[str, str],
        *,
        stdout: Path | None = None,
        stderr: Path | None = None,
        limits: ResourceLimits | None = None,
    ) -> TaskProcess:
        """Start ARGS as ``/usr/bin/env ARGS`` would, with stdin from /dev/null and output to files
        or /dev/null.

        The program is looked up in the task's own ``PATH`` and executed directly (``argv[0]`` as
        given): an extra ``exec`` of ``env`` per task halved the spawn rate. Whenever the direct
        route could differ from ``env`` (no such program, a script without ``#!`` that only
        ``execvp`` runs through ``sh``, any exec error), the task goes through ``env`` itself, so
        its exit status and message are exactly 0.6.8's. Without resource limits (which need a
        hook in the child) the direct route is ``posix_spawn``, watched through a pidfd."""
        devnull = _devnull()
        program = resolve_program(args[0], env) if args else None
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(stdout.open("wb")).fileno() if stdout else devnull
            err = stack.enter_context(stderr.open("wb")).fileno() if stderr else devnull
            if program is not None and limits is None and _PIDFD:
                pid = _posix_spawn(program, args, env, (devnull, out, err))
                if pid is not None:
                    return cls(_PidfdChild(pid))
            options: dict[str, object] = {
                "stdin": devnull,
                "stdout": out,
                "stderr": err,
                "env": dict(env),
                "start_new_session": True,
                "preexec_fn": _limits_preexec(limits) if limits is not None else None,
            }
            if program is not None:
                try:
                    proc = await asyncio.create_subprocess_exec(*args, executable=program, **options)  # type: ignore[arg-type]
                except OSError:
                    pass  # let env run it (or fail) the 0.6.8 way
                else:
                    return cls(proc)
            proc = await asyncio.create_subprocess_exec(ENV_PROGRAM, *args, **options)  # type: ignore[arg-type]
        return cls(proc)

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    def exit_future(self) -> asyncio.Future[int]:
        """A future of the leader's returncode (not to be cancelled: it may be the child's own)."""
        if isinstance(self._proc, _PidfdChild):
            return self._proc.exit_future()
        return asyncio.ensure_future(self._proc.wait())

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    async def wait(self) -> int:
        """Wait for the leader; then clear whatever it left in its group. Returns the raw status."""
        returncode = await self._proc.wait()
        self._signal_group(signal.SIGKILL)
        return raw_wait_status(returncode)

    async def kill(self) -> int:
        self._signal_group(signal.SIGKILL)
        return await self.wait()

    async def terminate(self, grace: float, stop: asyncio.Event | None = None) -> int:
        """SIGTERM the group, SIGKILL it after ``grace`` seconds (or at once when ``stop`` is set)."""
        self._signal_group(signal.SIGTERM)
        waiter = asyncio.ensure_future(self._proc.wait())
        stopper = asyncio.ensure_future(stop.wait()) if stop is not None else None
        pending = {waiter} if stopper is None else {waiter, stopper}
        try:
            await asyncio.wait(pending, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if stopper is not None:
                stopper.cancel()
        if not waiter.done():
            self._signal_group(signal.SIGKILL)
        await waiter
        return await self.wait()


async def supervise(
    proc: TaskProcess,
    *,
    deadline: float,
    stop: asyncio.Event,
    cancel: asyncio.Event,
    on_timeout: Callable[[], Awaitable[None]] | None = None,
    term_grace: float = TERM_GRACE_SECONDS,
    cancel_grace: float = CANCEL_GRACE_SECONDS,
) -> ExecResult:
    """Wait for the process, racing the timeout (``deadline`` on the monotonic clock), a user
    cancellation and a worker stop. Stop wins over everything, then the process exit."""
    exited = proc.exit_future()
    await wait_any((exited,), (stop, cancel), timeout=deadline - time.monotonic())
    if stop.is_set():
        return ExecResult(Outcome.STOPPED, await proc.kill())
    if exited.done():
        return ExecResult(Outcome.FINISHED, await proc.wait())
    if cancel.is_set():
        return ExecResult(Outcome.CANCELLED, await proc.terminate(cancel_grace, stop))
    if on_timeout is not None:
        await on_timeout()
    status = await proc.terminate(term_grace, stop)
    return ExecResult(Outcome.STOPPED if stop.is_set() else Outcome.TIMEOUT, status)
