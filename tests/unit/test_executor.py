"""Task processes: environment, raw wait status, process-group kill, output capture, limits."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from mitosis.wire.models import ResourceLimits
from mitosis.worker.executor import Outcome, TaskProcess, supervise, task_env
from mitosis.worker.wakeup import Flag

MITO = {
    "MITO_RESULT_DIR": "/r",
    "MITO_EXEC_DIR": "/e",
    "MITO_RESOURCE_DIR": "/res",
    "MITO_TASK_UUID": "uuid-1",
    "MITO_NEW_TASK": "/n.json",
}


async def _run(
    args: list[str],
    env: dict[str, str] | None = None,
    *,
    timeout: float = 10.0,
    tmp: Path | None = None,
    limits: ResourceLimits | None = None,
    grace: float = 10.0,
) -> tuple[Outcome, int]:
    proc = await TaskProcess.spawn(
        args,
        env if env is not None else dict(os.environ),
        stdout=tmp / "stdout.log" if tmp else None,
        stderr=tmp / "stderr.log" if tmp else None,
        limits=limits,
    )
    result = await supervise(
        proc,
        deadline=time.monotonic() + timeout,
        stop=asyncio.Event(),
        cancel=asyncio.Event(),
        term_grace=grace,
    )
    return result.outcome, result.exit_status


async def test_env_present_and_not_overridable(tmp_path: Path) -> None:
    base = {"PATH": os.environ["PATH"], "MITO_UPSTREAM_TASK_UUID": "stale", "KEEP": "1"}
    envs = {"MITO_TASK_UUID": "forged", "MITO_OTHER": "x", "USER_VAR": "v"}
    env = task_env(base, envs, MITO)
    assert env["MITO_TASK_UUID"] == "uuid-1"
    assert "MITO_OTHER" not in env and "MITO_UPSTREAM_TASK_UUID" not in env
    assert env["USER_VAR"] == "v" and env["KEEP"] == "1"
    outcome, status = await _run(["sh", "-c", "env > $0", str(tmp_path / "env.txt")], env)
    assert (outcome, status) == (Outcome.FINISHED, 0)
    seen = dict(line.split("=", 1) for line in (tmp_path / "env.txt").read_text().splitlines() if "=" in line)
    for key, value in MITO.items():
        assert seen[key] == value
    assert seen["USER_VAR"] == "v"


async def test_raw_exit_status() -> None:
    assert await _run(["sh", "-c", "exit 3"]) == (Outcome.FINISHED, 768)
    assert await _run(["sh", "-c", "kill -9 $$"]) == (Outcome.FINISHED, 9)
    assert await _run(["true"]) == (Outcome.FINISHED, 0)


async def test_timeout_kills_forked_grandchild(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    # The grandchild ignores nothing but outlives its parent unless the whole group is killed.
    script = f"sleep 300 & echo $! > {pidfile}; echo started; wait"
    started = time.monotonic()
    outcome, status = await _run(["sh", "-c", script], timeout=1.0, tmp=tmp_path, grace=2.0)
    assert outcome is Outcome.TIMEOUT
    assert status == 15  # SIGTERM
    assert time.monotonic() - started < 5
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 3
    while psutil.pid_exists(grandchild) and psutil.Process(grandchild).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "grandchild survived the timeout"
        await asyncio.sleep(0.05)
    # Output written before the timeout is kept (0.6.8 lost it).
    assert (tmp_path / "stdout.log").read_text() == "started\n"


async def test_sigterm_ignored_then_sigkill(tmp_path: Path) -> None:
    outcome, status = await _run(
        ["sh", "-c", "trap '' TERM; echo ready; sleep 30"], timeout=0.5, tmp=tmp_path, grace=0.5
    )
    assert outcome is Outcome.TIMEOUT and status == 9


async def test_terminal_output_captured_to_files(tmp_path: Path) -> None:
    outcome, _ = await _run(["sh", "-c", "echo out; echo err >&2"], tmp=tmp_path)
    assert outcome is Outcome.FINISHED
    assert (tmp_path / "stdout.log").read_text() == "out\n"
    assert (tmp_path / "stderr.log").read_text() == "err\n"


@pytest.mark.parametrize("event", [asyncio.Event, Flag], ids=["event", "flag"])
async def test_cancel_and_stop(tmp_path: Path, event: type[asyncio.Event]) -> None:
    proc = await TaskProcess.spawn(["sleep", "60"], dict(os.environ))
    cancel = event()
    asyncio.get_running_loop().call_later(0.2, cancel.set)
    started = time.monotonic()
    result = await supervise(proc, deadline=time.monotonic() + 30, stop=event(), cancel=cancel)
    assert result.outcome is Outcome.CANCELLED and result.exit_status == 15
    assert time.monotonic() - started < 2

    proc = await TaskProcess.spawn(["sleep", "60"], dict(os.environ))
    stop = event()
    asyncio.get_running_loop().call_later(0.2, stop.set)
    result = await supervise(proc, deadline=time.monotonic() + 30, stop=stop, cancel=event())
    assert result.outcome is Outcome.STOPPED and result.exit_status == 9


async def test_open_files_limit_enforced(tmp_path: Path) -> None:
    outcome, status = await _run(
        ["sh", "-c", "ulimit -n > $0", str(tmp_path / "n")], limits=ResourceLimits(open_files=32)
    )
    assert (outcome, status) == (Outcome.FINISHED, 0)
    assert (tmp_path / "n").read_text().strip() == "32"
    script = "import os\nfds=[]\ntry:\n  [fds.append(os.open('/dev/null', 0)) for _ in range(100)]\nexcept OSError:\n  raise SystemExit(7)"
    outcome, status = await _run(["python3", "-c", script], limits=ResourceLimits(open_files=32))
    assert status == 7 << 8


async def test_missing_program_is_env_exit_127() -> None:
    assert await _run(["definitely-not-a-program-xyz"]) == (Outcome.FINISHED, 127 << 8)


def test_pidfd_child_watcher_in_own_loop() -> None:
    """`mito worker` installs the pidfd watcher in its own loop; spawning then works through it."""
    script = (
        "import asyncio, os, sys\n"
        "from mitosis.worker.executor import TaskProcess, install_child_watcher\n"
        "async def main():\n"
        "    install_child_watcher()\n"
        "    proc = await TaskProcess.spawn(['sh', '-c', 'exit 5'], dict(os.environ))\n"
        "    status = await proc.wait()\n"
        "    if sys.version_info < (3, 12):\n"
        "        print(type(asyncio.get_child_watcher()).__name__)\n"
        "    print(status)\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    )
    lines = out.stdout.split()
    assert lines[-1] == str(5 << 8)
    if sys.version_info < (3, 12):
        assert lines[0] == "PidfdChildWatcher"


async def test_orphans_left_in_group_are_killed_when_leader_exits(tmp_path: Path) -> None:
    pidfile = tmp_path / "orphan.pid"
    script = f"(trap '' TERM; sleep 300) & echo $! > {pidfile}"
    assert await _run(["sh", "-c", script]) == (Outcome.FINISHED, 0)
    orphan = int(pidfile.read_text())
    deadline = time.monotonic() + 3
    while psutil.pid_exists(orphan) and psutil.Process(orphan).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "orphan survived its task"
        await asyncio.sleep(0.05)


# --------------------------------------------------------------- the direct route and its fallback


def test_programs_are_found_in_the_tasks_own_path(tmp_path: Path) -> None:
    from mitosis.worker.executor import resolve_program

    tool = tmp_path / "bin" / "mytool"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\necho hi\n")
    tool.chmod(0o755)
    assert resolve_program("mytool", {"PATH": f"/nonexistent:{tool.parent}"}) == str(tool)
    assert resolve_program("mytool", {"PATH": "/usr/bin:/bin"}) is None
    assert resolve_program("./x/y", {"PATH": ""}) == "./x/y"  # a slash: taken as given
    assert resolve_program("", {"PATH": "/bin"}) is None
    tool.chmod(0o644)  # no longer executable: the remembered answer is not trusted
    assert resolve_program("mytool", {"PATH": str(tool.parent)}) is None


async def test_argv0_is_kept_and_the_task_leads_its_own_session(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {"PATH": os.environ["PATH"]}
    # `sh -c` prints its $0 and whether its pid leads its process group and session.
    script = 'echo "$0"; ps -o pid=,pgid=,sid= -p $$ > "$1"'
    outcome, status = await _run(["sh", "-c", script, "name0", str(out)], env, tmp=tmp_path)
    assert (outcome, status) == (Outcome.FINISHED, 0)
    assert (tmp_path / "stdout.log").read_text() == "name0\n"
    pid, pgid, sid = out.read_text().split()
    assert pid == pgid == sid


async def test_a_script_without_shebang_runs_through_sh_as_with_env(tmp_path: Path) -> None:
    script = tmp_path / "noshebang"
    script.write_text(f"echo ran > {tmp_path / 'mark'}\nexit 3\n")
    script.chmod(0o755)
    outcome, status = await _run([str(script)], {"PATH": os.environ["PATH"]})
    assert (outcome, status) == (Outcome.FINISHED, 3 << 8)
    assert (tmp_path / "mark").read_text() == "ran\n"


async def test_a_missing_program_fails_exactly_as_env_does(tmp_path: Path) -> None:
    outcome, status = await _run(["no-such-program-xyz"], {"PATH": os.environ["PATH"]}, tmp=tmp_path)
    assert (outcome, status) == (Outcome.FINISHED, 127 << 8)
    assert "no-such-program-xyz" in (tmp_path / "stderr.log").read_text()


async def test_stdin_is_empty_and_output_discarded_without_terminal_output() -> None:
    outcome, status = await _run(["sh", "-c", "read line && exit 1; echo gone; exit 0"], dict(os.environ))
    assert (outcome, status) == (Outcome.FINISHED, 0)


async def test_many_spawns_leave_no_zombie_or_open_descriptor() -> None:
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(50):
        assert await _run(["true"], {"PATH": os.environ["PATH"]}) == (Outcome.FINISHED, 0)
    assert len(os.listdir("/proc/self/fd")) <= before + 1  # the shared /dev/null descriptor
    children = psutil.Process().children()
    assert [c for c in children if c.status() == psutil.STATUS_ZOMBIE] == []
