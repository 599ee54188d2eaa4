"""``mito manager``: spawn, list and stop local worker processes (logic in :mod:`mitosis.manager`)."""

from __future__ import annotations

import time
from typing import Any

import click
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from mitosis import manager as mgr
from mitosis.cli.worker import forwarded_argv, worker_options


@click.group("manager")
def manager() -> None:
    """Manage worker processes on this machine."""


@manager.command("spawn")
@click.argument("count", type=click.IntRange(min=0))
@worker_options
def spawn(count: int, **options: Any) -> None:
    """Start COUNT detached workers with the given worker options."""
    console = Console()
    if count == 0:
        console.print("[yellow]warning:[/] COUNT is 0, no worker spawned")
        return
    argv = forwarded_argv(options)
    spawned: list[mgr.SpawnedWorker] = []
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task("spawning workers", total=count)
        for _ in range(count):
            spawned.append(mgr.spawn_one(argv))
            progress.advance(bar)
    mgr.record_spawned(spawned)
    time.sleep(0.5)  # let a worker that fails at once (bad flag, no credentials) exit first
    alive = sum(1 for _, up in mgr.status() if up)
    console.print(f"Current worker numbers: {alive}")


def _masked(argv: list[str]) -> list[str]:
    """The command line with the value of ``--password`` hidden."""
    return ["***" if i > 0 and argv[i - 1] in ("--password", "-p") else arg for i, arg in enumerate(argv)]


@manager.command("status")
def status() -> None:
    """List the workers spawned by this manager and whether each is alive."""
    console = Console()
    rows = mgr.status()
    table = Table("pid", "state", "command")
    for record, alive in rows:
        table.add_row(str(record.pid), "alive" if alive else "dead", " ".join(_masked(record.argv[1:])))
    if rows:
        console.print(table)
    console.print(f"Total: {sum(1 for _, up in rows if up)}")


@manager.command("kill")
def kill() -> None:
    """Stop (SIGTERM, graceful) every worker spawned by this manager."""
    count = mgr.kill()
    if count:
        click.echo(f"Sent SIGTERM to {count} worker(s)")
    else:
        click.echo("No worker spawned by this manager is running")
