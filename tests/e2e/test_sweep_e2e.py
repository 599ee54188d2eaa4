"""Parameter sweeps against a live coordinator (SQLite and PostgreSQL), no worker: the SDK's
``submit_sweep`` (chunks, progress, per-task refusals, an interrupted submission) and the CLI's
``tasks submit --matrix`` (uuids, --uuids-file, usage errors, exit codes)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from mitosis.client import (
    AsyncMitoClient,
    ConnectionFailed,
    MitoClient,
    SubmitErr,
    SubmitOk,
    SubmitTaskReq,
    SweepError,
    SweepInterrupted,
    TaskSpec,
)
from mitosis.wire import models as m
from tests.e2e.clientcli import client_argv, client_env
from tests.support.coordinator import LiveCoordinator

pytestmark = pytest.mark.e2e


def _client(coord: LiveCoordinator, tmp_path: Path, **kw: object) -> MitoClient:
    c = MitoClient(coord.url, credential_path=tmp_path / "cred", **kw)  # type: ignore[arg-type]
    c.login(coord.admin_user, coord.admin_password, retain=True)
    return c


def test_sdk_sweep_in_chunks_with_progress(live_coordinator: LiveCoordinator, tmp_path: Path) -> None:
    with _client(live_coordinator, tmp_path) as c:
        group = live_coordinator.admin_user
        tpl = SubmitTaskReq(
            group_name=group, labels=["sdk-sweep", "x={x}"], task_spec=TaskSpec(args=["echo", "{x}", "{y}"])
        )
        calls: list[tuple[int, int]] = []
        chunks: list[list[SubmitOk | SubmitErr]] = []
        results = c.submit_sweep(
            tpl,
            {"x": ["1", "2", "3", "4", "5"], "y": ["a", "b"]},
            chunk=4,
            progress=lambda d, t: calls.append((d, t)),
            on_chunk=chunks.append,
        )
        assert calls == [(4, 10), (8, 10), (10, 10)]
        assert [len(ch) for ch in chunks] == [4, 4, 2] and [r for ch in chunks for r in ch] == results
        assert len(results) == 10 and all(isinstance(r, SubmitOk) for r in results)
        uuids = [r.Ok.uuid for r in results if isinstance(r, SubmitOk)]
        args = [c.get_task(u).info.spec.args for u in uuids]
        assert args[:3] == [["echo", "1", "a"], ["echo", "1", "b"], ["echo", "2", "a"]]
        found = c.query_tasks(m.TasksQueryReq(group_name=group, labels=["sdk-sweep", "x=3"]))
        assert {t.uuid for t in found.tasks} == set(uuids[4:6])

        # A task the coordinator refuses is a SubmitErr in its place; the others are submitted.
        res = m.RemoteResourceDownload(
            remote_file=m.RemoteResource(Attachment=m.AttachmentRef(key="k")), local_path="{d}/in"
        )
        bad = SubmitTaskReq(group_name=group, task_spec=TaskSpec(args=["true"], resources=[res]))
        mixed = c.submit_sweep(bad, {"d": ["ok", "..", "fine"]})
        assert [type(r) for r in mixed] == [SubmitOk, SubmitErr, SubmitOk]
        assert isinstance(mixed[1], SubmitErr) and "local path" in mixed[1].Err.msg

        with pytest.raises(SweepError, match=r"unknown placeholder \{z\}"):
            c.submit_sweep(tpl.model_copy(update={"labels": ["{z}"]}), {"x": ["1"], "y": ["1"]})


def test_async_sweep(live_coordinator: LiveCoordinator, tmp_path: Path) -> None:
    async def run() -> list[SubmitOk | SubmitErr]:
        async with AsyncMitoClient(live_coordinator.url, credential_path=tmp_path / "cred") as c:
            await c.login(live_coordinator.admin_user, live_coordinator.admin_password, retain=True)
            tpl = SubmitTaskReq(
                group_name=live_coordinator.admin_user, task_spec=TaskSpec(args=["echo", "{n}"])
            )
            return await c.submit_sweep(tpl, {"n": [str(i) for i in range(7)]}, chunk=3)

    results = asyncio.run(run())
    assert len(results) == 7 and all(isinstance(r, SubmitOk) for r in results)


class _FailSecondBatch(httpx.BaseTransport):
    """Forwards to the real coordinator, but the second batch submission never gets through."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.batches = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/tasks/submit":
            self.batches += 1
            if self.batches == 2:
                raise httpx.ConnectError("connection refused", request=request)
        return self.inner.handle_request(request)


def test_interrupted_sweep_reports_what_was_submitted(
    live_coordinator: LiveCoordinator, tmp_path: Path
) -> None:
    with _client(live_coordinator, tmp_path, transport=_FailSecondBatch()) as c:
        tpl = SubmitTaskReq(group_name=live_coordinator.admin_user, task_spec=TaskSpec(args=["echo", "{n}"]))
        with pytest.raises(SweepInterrupted) as info:
            c.submit_sweep(tpl, {"n": [str(i) for i in range(5)]}, chunk=2)
        exc = info.value
        assert len(exc.results) == 2 and exc.total == 5 and isinstance(exc.cause, ConnectionFailed)
        assert "stopped after 2 of 5" in str(exc)


def _cli(coord: LiveCoordinator, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [
        *client_argv(), "-c", coord.url, "--credential-path", str(home / "cred"),
        "-u", coord.admin_user, "-p", coord.admin_password, *args,
    ]  # fmt: skip
    return subprocess.run(
        argv, env=client_env(home), capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


def test_cli_sweep(live_coordinator: LiveCoordinator, tmp_path: Path) -> None:
    coord = live_coordinator
    out = _cli(coord, tmp_path, "tasks", "submit", "--matrix", "x=1,2", "-m", "y=a,b,c", "-l", "cli-sweep",
               "-l", "x={x}", "-e", "Y={y}", "--", "echo", "{x}", "{y}")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr and "submitted 6 of 6 task(s)" in out.stderr
    uuids = out.stdout.split()
    assert len(uuids) == 6
    listed = json.loads(
        _cli(coord, tmp_path, "tasks", "query", "-l", "cli-sweep", "-l", "x=2", "--json").stdout
    )
    assert {t["uuid"] for t in listed["tasks"]} == set(uuids[3:])
    task = json.loads(_cli(coord, tmp_path, "tasks", "get", uuids[5], "--json").stdout)["info"]
    assert task["spec"]["args"] == ["echo", "2", "c"] and task["spec"]["envs"] == {"Y": "c"}

    file = tmp_path / "out" / "uuids.txt"
    quiet = _cli(
        coord, tmp_path, "tasks", "submit", "-m", "n=1,2,3", "--uuids-file", str(file), "--", "echo", "{n}"
    )
    assert quiet.returncode == 0 and quiet.stdout == ""
    assert len(file.read_text().split()) == 3 and str(file) in quiet.stderr

    as_json = _cli(coord, tmp_path, "tasks", "submit", "-m", "n=1,2", "--json", "--", "echo", "{n}")
    assert [list(r) for r in json.loads(as_json.stdout)["results"]] == [["Ok"], ["Ok"]]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["-m", "x=1,2", "--", "echo", "{x}", "{y}"], "unknown placeholder {y}"),
        (["-m", "x=", "--", "echo", "{x}"], "no values"),
        (["-m", "x=1,,2", "--", "echo", "{x}"], "empty value"),
        (["-m", "x=1", "--", "echo", "no-placeholder"], "x not used"),
        (["-m", "a=1,2,3", "-m", "b=1,2", "--max-tasks", "5", "--", "echo", "{a}{b}"], "6 tasks"),
        (["--uuids-file", "f", "--", "echo"], "only applies to a sweep"),
    ],
)
def test_cli_sweep_usage_errors(
    sqlite_coordinator: LiveCoordinator, tmp_path: Path, args: list[str], needle: str
) -> None:
    out = _cli(sqlite_coordinator, tmp_path, "tasks", "submit", *args)
    assert out.returncode == 2, out
    assert needle in out.stderr and "Traceback" not in out.stderr


def test_cli_sweep_with_refused_tasks_exits_1(sqlite_coordinator: LiveCoordinator, tmp_path: Path) -> None:
    out = _cli(sqlite_coordinator, tmp_path, "tasks", "submit", "-m", "d=ok,..", "-r", "attachment=k:{d}/in",
               "--", "true")  # fmt: skip
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert len(out.stdout.split()) == 1
    assert "1 of 2 task(s) were refused" in out.stderr and "d=..: " in out.stderr


def _count(c: MitoClient, group: str, label: str) -> int:
    return c.query_tasks(m.TasksQueryReq(group_name=group, labels=[label], count=True)).count


def test_cli_sweep_checks_the_uuids_file_before_submitting(
    sqlite_coordinator: LiveCoordinator, tmp_path: Path
) -> None:
    (tmp_path / "plain-file").write_text("not a directory")
    target = tmp_path / "plain-file" / "uuids.txt"
    out = _cli(sqlite_coordinator, tmp_path, "tasks", "submit", "-m", "n=1,2,3", "-l", "unwritable",
               "--uuids-file", str(target), "--pb", "--chunk-size", "2", "--", "echo", "{n}")  # fmt: skip
    assert out.returncode == 2, out
    assert f"Invalid value for --uuids-file: cannot write {target}: {target.parent} is not a directory" in (
        out.stderr
    )
    assert "Traceback" not in out.stderr and out.stdout == ""
    with _client(sqlite_coordinator, tmp_path) as c:
        assert _count(c, sqlite_coordinator.admin_user, "unwritable") == 0


@pytest.mark.parametrize("to_file", [False, True], ids=["stdout", "uuids-file"])
def test_ctrl_c_during_a_sweep_lists_what_was_submitted(
    sqlite_coordinator: LiveCoordinator, tmp_path: Path, to_file: bool
) -> None:
    coord, group = sqlite_coordinator, sqlite_coordinator.admin_user
    label = f"interrupted-{to_file}"
    file = tmp_path / "out" / "uuids.txt"
    argv = [
        *client_argv(), "-c", coord.url, "--credential-path", str(tmp_path / "cred"),
        "-u", coord.admin_user, "-p", coord.admin_password, "--retain",
        "tasks", "submit", "-m", f"n={','.join(str(i) for i in range(3000))}", "-l", label,
        "--pb", "--chunk-size", "2", *(["--uuids-file", str(file)] if to_file else []), "--", "echo", "{n}",
    ]  # fmt: skip
    proc = subprocess.Popen(
        argv, env=client_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with _client(coord, tmp_path / "watcher") as c:
            deadline = time.monotonic() + 60
            while _count(c, group, label) < 20:
                assert proc.poll() is None and time.monotonic() < deadline, proc.poll()
                time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err and "Aborted" not in err
    printed = file.read_text().split() if to_file else out.split()
    assert out == "" if to_file else printed
    assert f"interrupted: {len(printed)} of 3000 task(s) were submitted" in err
    assert f"`mito client tasks query -g {group} -l {label}`" in err
    with _client(coord, tmp_path / "checker") as c:
        found = c.query_tasks(m.TasksQueryReq(group_name=group, labels=[label]))
    submitted = {str(t.uuid) for t in found.tasks}
    # Every uuid printed exists; at most the one batch in flight at Ctrl-C exists unprinted.
    assert set(printed) <= submitted and len(submitted) - len(printed) <= 2
    assert 18 <= len(printed) < 3000  # 20 existed at Ctrl-C, the last batch perhaps unanswered
