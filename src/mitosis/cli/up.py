"""``mito up``: a coordinator and workers on the embedded defaults, and a demo task."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mitosis.client.errors import MitoError
from mitosis.up import DEMO_MESSAGE, LocalCluster, UpError, credential_path_for_up, default_up_dir


@click.command("up")
@click.option("-b", "--bind", default="127.0.0.1:5000", show_default=True, help="coordinator address")
@click.option(
    "-n", "--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="worker count"
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="where the database, keys, blobs and logs live [default: the user data dir]",
)
@click.option("--once", is_flag=True, help="run the demo task, then stop everything and exit")
def up(bind: str, workers: int, data_dir: Path | None, once: bool) -> None:
    """Start a local cluster (coordinator + workers), run an `echo` task and print its output."""
    cluster = LocalCluster(
        bind=bind,
        data_dir=data_dir or default_up_dir(),
        workers=workers,
        credential_path=credential_path_for_up(),
        log=click.echo,
    )
    try:
        cluster.start()
        status, out = cluster.run_demo()
        click.echo(f"task output  {out.rstrip()}")
        if status != 0 or out.strip() != DEMO_MESSAGE:
            raise UpError(f"the demo task ended with wait status {status} and output {out!r}")
        click.echo("the demo task ran end to end.")
        if once:
            return
        click.echo(
            f"cluster running; try `mito client -c http://{bind} tasks submit -- uname -a`. Ctrl-C stops it."
        )
        cluster.wait_forever()
    except KeyboardInterrupt:
        click.echo("stopping")
    except (UpError, MitoError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    finally:
        cluster.stop()
