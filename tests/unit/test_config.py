"""Configuration layers (issue 2): defaults ← user file ← --config ← MITO_* ← command line, durations
in humantime, and the one-line error for a bad value."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from mitosis.cli import flag_names
from mitosis.config import ConfigError, CoordinatorSettings, WorkerSettings, load


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("MITO_"):
            monkeypatch.delenv(key)


def _files(tmp_path: Path) -> tuple[Path, Path]:
    user = tmp_path / "user.toml"
    user.write_text('[worker]\npolling_interval = "1m"\nheartbeat_interval = "2m"\ngroups = ["a"]\n')
    given = tmp_path / "given.toml"
    given.write_text('[worker]\nheartbeat_interval = "3m"\ncoordinator_addr = "http://127.0.0.1:7000"\n')
    return user, given


def test_each_layer_overrides_the_one_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user, given = _files(tmp_path)
    monkeypatch.setenv("MITO_COORDINATOR_ADDR", "http://127.0.0.1:8000")
    loaded = load(
        WorkerSettings,
        config_file=given,
        global_file=user,
        cli={"coordinator_addr": None, "lifetime": "1h 30m"},
    )
    s = loaded.settings
    assert s.polling_interval == timedelta(minutes=1)  # user file over the default (3 min)
    assert s.heartbeat_interval == timedelta(minutes=3)  # --config over the user file
    assert s.coordinator_addr == "http://127.0.0.1:8000"  # environment over --config
    assert s.lifetime == timedelta(hours=1, minutes=30)  # command line, humantime
    assert loaded.sources["polling_interval"] == str(user)
    assert loaded.sources["heartbeat_interval"] == str(given)
    assert loaded.sources["coordinator_addr"] == "env MITO_COORDINATOR_ADDR"
    assert loaded.sources["lifetime"] == "command line"
    # A flag given on the command line beats the environment too.
    s = load(
        WorkerSettings, config_file=given, global_file=user, cli={"coordinator_addr": "http://h:1"}
    ).settings
    assert s.coordinator_addr == "http://h:1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("600s", timedelta(seconds=600)), ("7d", timedelta(days=7)), ("1h 30m", timedelta(minutes=90))],
)
def test_durations_accept_humantime(text: str, expected: timedelta, tmp_path: Path) -> None:
    s = load(
        CoordinatorSettings, cli={"heartbeat_timeout": text}, global_file=tmp_path / "none.toml"
    ).settings
    assert s.heartbeat_timeout == expected


def test_a_bad_value_is_one_line_naming_key_value_origin_and_what_is_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    none = tmp_path / "none.toml"
    with pytest.raises(ConfigError) as err:
        load(CoordinatorSettings, cli={"db_url": "foo:bar"}, global_file=none, flags={"db_url": "--db"})
    assert str(err.value) == (
        "invalid value for coordinator.db_url (command line --db): 'foo:bar': "
        "expected sqlite:///PATH or postgresql://USER@HOST:PORT/DB"
    )
    monkeypatch.setenv("MITO_HEARTBEAT_TIMEOUT", "soon")
    with pytest.raises(ConfigError) as err:
        load(CoordinatorSettings, global_file=none)
    message = str(err.value)
    assert message.startswith(
        "invalid value for coordinator.heartbeat_timeout (env MITO_HEARTBEAT_TIMEOUT): 'soon'"
    )
    assert "use e.g. 600s, 10m, 1h 30m, 7d" in message and "\n" not in message
    given = tmp_path / "given.toml"
    given.write_text("[coordinator]\nbind = 'nowhere'\n")
    monkeypatch.delenv("MITO_HEARTBEAT_TIMEOUT")
    with pytest.raises(ConfigError) as err:
        load(CoordinatorSettings, config_file=given, global_file=none)
    assert str(err.value).startswith(f"invalid value for coordinator.bind ({given}): 'nowhere'")


def test_flag_names_come_from_the_running_command() -> None:
    seen: dict[str, str] = {}

    @click.command()
    @click.option("--db", "db_url")
    @click.option("-b", "--bind")
    def cmd(db_url: str | None, bind: str | None) -> None:
        seen.update(flag_names())

    assert CliRunner().invoke(cmd, []).exit_code == 0
    assert seen == {"db_url": "--db", "bind": "--bind"}
    assert flag_names() == {}  # outside a command


def test_the_coordinator_refuses_to_start_with_a_bad_flag_and_exits_2(tmp_path: Path) -> None:
    mito = Path(sys.executable).parent / "mito"
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [str(mito), "coordinator", "--db", "foo:bar", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: invalid value for coordinator.db_url (command line --db): 'foo:bar': "
        "expected sqlite:///PATH or postgresql://USER@HOST:PORT/DB"
    ]


def test_db_pool_size_sizes_the_postgresql_pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mitosis.coordinator.db.engine import make_engine

    none = tmp_path / "none.toml"
    assert load(CoordinatorSettings, global_file=none).settings.db_pool_size == 20
    monkeypatch.setenv("MITO_DB_POOL_SIZE", "8")
    settings = load(CoordinatorSettings, global_file=none).settings
    assert settings.db_pool_size == 8
    engine = make_engine("postgresql://postgres@127.0.0.1:5432/postgres", pool_size=settings.db_pool_size)
    pool: Any = engine.sync_engine.pool  # nothing connects until the first checkout
    assert (pool.size(), pool._max_overflow) == (8, 4)  # kept; opened under bursts on top
    monkeypatch.setenv("MITO_DB_POOL_SIZE", "0")
    with pytest.raises(ConfigError) as err:
        load(CoordinatorSettings, global_file=none)
    assert str(err.value).startswith(
        "invalid value for coordinator.db_pool_size (env MITO_DB_POOL_SIZE): '0'"
    )
