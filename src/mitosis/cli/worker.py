"""``mito worker``: the command line of a worker (every 0.6.8 flag plus ``--long-poll``, ``--work-dir``,
``--prefetch`` and ``--no-batch``).

Flags only build the override layer of the configuration (:func:`mitosis.config.load`); the worker
itself lives in :mod:`mitosis.worker.runner`. The option list is shared with ``mito manager spawn``,
which forwards the same flags to the workers it starts.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from mitosis.cli import flag_names
from mitosis.config import ConfigError, WorkerSettings, load

F = TypeVar("F", bound=Callable[..., Any])

_LIST_FLAGS = {"groups": "--groups", "tags": "--tags", "labels": "--labels"}
_VALUE_FLAGS = {
    "coordinator": "--coordinator",
    "config": "--config",
    "polling_interval": "--polling-interval",
    "heartbeat_interval": "--heartbeat-interval",
    "credential_path": "--credential-path",
    "user": "--user",
    "password": "--password",
    "lifetime": "--lifetime",
    "log_path": "--log-path",
    "long_poll": "--long-poll",
    "work_dir": "--work-dir",
    "prefetch": "--prefetch",
}
_BOOL_FLAGS = {
    "file_log": "--file-log",
    "shared_log": "--shared-log",
    "retain": "--retain",
    "skip_redis": "--skip-redis",
    "no_batch": "--no-batch",
}

_OPTIONS: list[Callable[[F], F]] = [
    click.option(
        "-c", "--coordinator", metavar="URL", help="Coordinator address [default: http://127.0.0.1:5000]."
    ),
    click.option(
        "--config", type=click.Path(path_type=Path), help="TOML config file [default: ./config.toml]."
    ),
    click.option(
        "--polling-interval", metavar="DURATION", help="Sleep when no task is available [default: 3m]."
    ),
    click.option("--heartbeat-interval", metavar="DURATION", help="Heartbeat period [default: 5m]."),
    click.option("--credential-path", type=click.Path(path_type=Path), help="Credential file."),
    click.option("-u", "--user", help="User to log in as."),
    click.option("-p", "--password", help="Password for the login."),
    click.option(
        "-g",
        "--groups",
        multiple=True,
        metavar="G[:ROLE],...",
        help="Groups to serve, e.g. g1,g2:write,g3:read (repeatable).",
    ),
    click.option("-t", "--tags", multiple=True, metavar="T,...", help="Worker tags (repeatable)."),
    click.option("-l", "--labels", multiple=True, metavar="L,...", help="Worker labels (repeatable)."),
    click.option("--lifetime", metavar="DURATION", help="Worker token lifetime [default: coordinator's]."),
    click.option("--log-path", type=click.Path(path_type=Path), help="Log file."),
    click.option("--file-log", is_flag=True, default=None, help="Also log to a file."),
    click.option("--shared-log", is_flag=True, default=None, help="One shared daily-rotated log file."),
    click.option("--retain", is_flag=True, default=None, help="Accepted for 0.6.8 compatibility; ignored."),
    click.option("--skip-redis", is_flag=True, default=None, help="Never connect to Redis."),
    click.option(
        "--long-poll", metavar="DURATION", help="Hold each fetch up to this long [default: 30s; 0 = off]."
    ),
    click.option("--work-dir", type=click.Path(path_type=Path), help="Directory for task files."),
    click.option(
        "--prefetch",
        metavar="N",
        help="Claim up to N (and about 1s of) tasks ahead while tasks are short (under 100ms); "
        "1 = never [default: 64].",
    ),
    click.option(
        "--no-batch",
        is_flag=True,
        default=None,
        help="Speak only the 0.6.8 per-task protocol, even to a coordinator with POST /workers/batch.",
    ),
]


def worker_options(func: F) -> F:
    """Attach every worker flag to a click command."""
    for option in reversed(_OPTIONS):
        func = option(func)
    return func


def _split(values: tuple[str, ...] | None) -> list[str] | None:
    if not values:
        return None
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def overrides(options: dict[str, Any]) -> dict[str, Any]:
    """The command-line layer of WorkerSettings from parsed flags (unset flags are left out)."""
    cli: dict[str, Any] = {
        "coordinator_addr": options.get("coordinator"),
        "polling_interval": options.get("polling_interval"),
        "heartbeat_interval": options.get("heartbeat_interval"),
        "credential_path": options.get("credential_path"),
        "user": options.get("user"),
        "password": options.get("password"),
        "lifetime": options.get("lifetime"),
        "log_path": options.get("log_path"),
        "long_poll": options.get("long_poll"),
        "work_dir": options.get("work_dir"),
        "prefetch": options.get("prefetch"),
    }
    for key in _LIST_FLAGS:
        cli[key] = _split(options.get(key))
    for key in _BOOL_FLAGS:
        cli[key] = True if options.get(key) else None
    cli["batch"] = False if cli.pop("no_batch") else None
    return {k: v for k, v in cli.items() if v is not None}


def forwarded_argv(options: dict[str, Any]) -> list[str]:
    """The flags to hand to a spawned ``worker`` so it is configured as given here."""
    argv: list[str] = []
    for key, flag in _VALUE_FLAGS.items():
        if options.get(key) is not None:
            argv += [flag, str(options[key])]
    for key, flag in _LIST_FLAGS.items():
        items = _split(options.get(key))
        if items:
            argv += [flag, ",".join(items)]
    for key, flag in _BOOL_FLAGS.items():
        if options.get(key):
            argv.append(flag)
    return argv


def _setup_console_logging() -> None:
    level_name = os.environ.get("MITO_LOG", "info").rpartition("=")[2].upper()
    logging.basicConfig(
        level=logging.getLevelNamesMapping().get(level_name, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs every request at INFO: with long-polling that is one line per second of idling.
    logging.getLogger("httpx").setLevel(logging.WARNING)


@click.command("worker")
@worker_options
def worker(**options: Any) -> None:
    """Run a worker: fetch tasks from the coordinator and execute them one at a time."""
    from mitosis.worker.runner import run_worker

    try:
        settings = load(
            WorkerSettings, config_file=options.get("config"), cli=overrides(options), flags=flag_names()
        ).settings
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    _setup_console_logging()
    sys.exit(run_worker(settings))


if __name__ == "__main__":
    # `mito manager spawn` starts workers as `python -m mitosis.cli.worker ...`.
    worker()
