"""``mito coordinator``: run the coordinator, or only apply database migrations."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import click

from mitosis.cli import flag_names
from mitosis.config import ConfigError, CoordinatorSettings, load


def _settings(config: Path | None, overrides: dict[str, Any]) -> CoordinatorSettings:
    try:
        return load(CoordinatorSettings, config_file=config, cli=overrides, flags=flag_names()).settings
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


def _logging(settings: CoordinatorSettings) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if settings.file_log or settings.log_path:
        path = (
            settings.log_path
            or settings.data_dir / "logs" / f"coordinator-{settings.bind.replace(':', '_')}.log"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )


_OPTIONS = [
    click.option("-b", "--bind", help="HOST:PORT to listen on [default: 127.0.0.1:5000]"),
    click.option(
        "--config", "config", type=click.Path(dir_okay=False, path_type=Path), help="TOML config file"
    ),
    click.option(
        "--db",
        "db_url",
        help="sqlite:///PATH or postgresql://USER@HOST:PORT/DB [default: SQLite in the data dir]",
    ),
    click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="where SQLite, keys and blobs live",
    ),
    click.option(
        "--public-url", help="URL workers and clients use to reach this coordinator (signed blob URLs)"
    ),
    click.option("--blob-store", type=click.Choice(["fs", "s3"]), help="fs (local directory) or s3"),
    click.option(
        "--blob-dir", type=click.Path(file_okay=False, path_type=Path), help="directory of the fs blob store"
    ),
    click.option("--s3", "s3_url", help="S3 endpoint URL"),
    click.option("--s3-access-key"),
    click.option("--s3-secret-key"),
    click.option("--s3-region"),
    click.option("--s3-force-path-style", is_flag=True, default=None),
    click.option("--artifacts-bucket"),
    click.option("--attachments-bucket"),
    click.option("--redis", "redis_url", help="redis://[:password@]HOST:PORT (optional)"),
    click.option("--redis-worker-password"),
    click.option("--redis-client-password"),
    click.option("--redis-skip-acl-rules", is_flag=True, default=None),
    click.option("--admin-user"),
    click.option(
        "--admin-password", help="bootstrap admin password [default: generated, stored beside the keys]"
    ),
    click.option("--access-token-private-path", type=click.Path(dir_okay=False, path_type=Path)),
    click.option("--access-token-public-path", type=click.Path(dir_okay=False, path_type=Path)),
    click.option("--access-token-expires-in", help="user token lifetime, e.g. 7d"),
    click.option("--heartbeat-timeout", help="remove workers silent for this long, e.g. 600s"),
    click.option(
        "--retention-days",
        type=int,
        help="delete archived tasks, their artifacts and events after N days [default: keep]",
    ),
    click.option("--log-path", type=click.Path(dir_okay=False, path_type=Path)),
    click.option("--file-log", is_flag=True, default=None),
]


def _with_options(func: Any) -> Any:
    for option in reversed(_OPTIONS):
        func = option(func)
    return func


@click.group("coordinator", invoke_without_command=True)
@_with_options
@click.pass_context
def coordinator(ctx: click.Context, /, config: Path | None, **overrides: Any) -> None:
    """Run the coordinator (HTTP API, scheduler, heartbeats) until SIGINT/SIGTERM."""
    ctx.obj = (config, overrides)
    if ctx.invoked_subcommand is not None:
        return
    from mitosis.coordinator.server import CoordinatorServer

    settings = _settings(config, overrides)
    _logging(settings)
    CoordinatorServer(settings).run()


@coordinator.command("migrate")
@click.pass_obj
def migrate(obj: tuple[Path | None, dict[str, Any]]) -> None:
    """Apply pending database migrations and exit."""
    from mitosis.coordinator.db.engine import make_engine, run_migrations

    settings = _settings(*obj)
    _logging(settings)

    async def run() -> None:
        engine = make_engine(settings.effective_db_url)
        try:
            await run_migrations(engine)
        finally:
            await engine.dispose()

    asyncio.run(run())
    click.echo(f"database at {settings.effective_db_url.split('@')[-1]} is up to date")
