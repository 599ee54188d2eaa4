"""Human formatting of the CLI: decoded exit statuses, relative times, sizes, and the formats."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from mitosis.client.output import (
    Printer,
    describe_exit_status,
    exit_code_of,
    human_size,
    local_time,
    relative_time,
    render_task,
)
from mitosis.wire import models as m


@pytest.mark.parametrize(
    ("raw", "text", "code"),
    [
        (0, "exit 0", 0),
        (256, "exit 1", 1),
        (768, "exit 3", 3),
        (255 << 8, "exit 255", 255),
        (9, "killed by SIGKILL", 137),
        (15, "killed by SIGTERM", 143),
        (11 | 0x80, "killed by SIGSEGV (core dumped)", 139),
        ((19 << 8) | 0x7F, "stopped by SIGSTOP", 147),
        (100, "killed by signal 100", 228),
    ],
)
def test_exit_status_decoding(raw: int, text: str, code: int) -> None:
    assert describe_exit_status(raw) == text
    assert exit_code_of(raw) == code


def test_missing_exit_status() -> None:
    assert describe_exit_status(None) == "-"


NOW = datetime(2025, 3, 4, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=2), "just now"),
        (timedelta(seconds=42), "42 s ago"),
        (timedelta(minutes=3, seconds=10), "3 min ago"),
        (timedelta(hours=2, minutes=59), "2 h ago"),
        (timedelta(days=1, hours=3), "1 day ago"),
        (timedelta(days=5), "5 days ago"),
        (-timedelta(minutes=5), "in 5 min"),
    ],
)
def test_relative_time(delta: timedelta, text: str) -> None:
    assert relative_time(NOW - delta, NOW) == text


def test_local_time_shows_local_clock_and_hint() -> None:
    when = NOW - timedelta(minutes=3)
    local = when.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    assert local_time(when, NOW) == f"{local} (3 min ago)"
    assert local_time(None) == "-"


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (512, "512 B"),
        (1024, "1 KiB"),
        (1536, "1.5 KiB"),
        (5 * 1024**3, "5 GiB"),
        (-2048, "-2 KiB"),
    ],
)
def test_sizes(n: int, text: str) -> None:
    assert human_size(n) == text


def test_json_and_yaml_are_the_wire_model(capsys: pytest.CaptureFixture[str]) -> None:
    resp = m.TasksCancelByFilterResp(cancelled_count=2, group_name="g")
    Printer("json").data(resp, lambda: None)
    assert json.loads(capsys.readouterr().out) == {"cancelled_count": 2, "group_name": "g"}
    Printer("yaml").data(resp, lambda: None)
    assert yaml.safe_load(capsys.readouterr().out) == {"cancelled_count": 2, "group_name": "g"}
    called: list[bool] = []
    Printer("table").data(resp, lambda: called.append(True))
    assert called == [True]


@pytest.mark.parametrize(("seconds", "shown"), [(600, "10m"), (5400, "1h 30m"), (90061, "1day 1h 1m 1s")])
def test_a_task_shows_its_timeout_as_a_duration(
    seconds: int, shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    info = {
        "uuid": "67e55044-10b1-426f-9247-bb680e5fe0c8",
        "creator_username": "alice",
        "group_name": "alice",
        "task_id": 1,
        "tags": [],
        "labels": [],
        "created_at": "2025-03-04 08:57:59.123456 +00:00:00",
        "updated_at": "2025-03-04 08:57:59.123456 +00:00:00",
        "state": "Ready",
        "timeout": seconds,
        "priority": 0,
        "spec": {"args": ["echo"], "envs": {}, "resources": [], "terminal_output": False, "watch": None},
        "result": None,
        "upstream_task_uuid": None,
        "downstream_task_uuid": None,
        "reporter_uuid": None,
    }
    resp = m.TaskQueryResp.model_validate({"info": info, "artifacts": []})
    render_task(Printer("table"), resp)
    rows = {
        line.split(maxsplit=1)[0]: line.split(maxsplit=1)[1].strip()
        for line in capsys.readouterr().out.splitlines()
        if line.strip()
    }
    assert rows["timeout"] == shown
