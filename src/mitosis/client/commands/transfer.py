"""Progress bars and batch downloads for the transfer commands (artifacts and attachments).

A single transfer shows one bar; a batch runs ``--concurrent N`` downloads at once under ONE overall
bar (bytes of all files) and ends with a summary naming every file that failed.
"""

from __future__ import annotations

import os
import sys
import tarfile
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from mitosis.archives import UnsafeArchiveError, safe_extract
from mitosis.client.commands import error_message
from mitosis.client.errors import MitoError
from mitosis.client.output import human_size
from mitosis.client.sdk import MitoClient, ProgressCallback

MAX_CONCURRENT = 64
"""``--concurrent`` past this only opens more connections to the same store."""


def want_progress(pb: bool) -> bool:
    """``--pb`` forces a bar; on a terminal it is shown anyway, in pipes and logs never by default."""
    return pb or sys.stderr.isatty()


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )


@contextmanager
def progress_bar(description: str, enabled: bool) -> Iterator[ProgressCallback | None]:
    """A callback for ``download_to``/``upload_file`` drawing one bar, or ``None`` when disabled."""
    if not enabled:
        yield None
        return
    with _progress() as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        yield update


@dataclass(frozen=True)
class Job:
    url: str
    dest: Path
    size: int
    label: str


def download_many(client: MitoClient, jobs: Sequence[Job], concurrent: int, pb: bool) -> None:
    """Download every job, ``concurrent`` at a time; raise a summary error if any failed."""
    if not jobs:
        click.echo("nothing to download", err=True)
        return
    failures: list[tuple[Job, BaseException]] = []
    lock = threading.Lock()
    enabled = want_progress(pb)
    with _progress() if enabled else _nullprogress() as progress:
        overall = (
            progress.add_task(f"{len(jobs)} file(s)", total=sum(j.size for j in jobs)) if progress else None
        )

        def run(job: Job) -> None:
            last = 0

            def advance(done: int, _total: int | None) -> None:
                nonlocal last
                with lock:
                    if progress is not None and overall is not None:
                        progress.advance(overall, done - last)
                last = done

            client.download_to(job.url, job.dest, advance)

        with ThreadPoolExecutor(max_workers=max(1, concurrent)) as pool:
            futures = {pool.submit(run, job): job for job in jobs}
            for future in as_completed(futures):
                exc = future.exception()
                if exc is not None:
                    failures.append((futures[future], exc))
    done = len(jobs) - len(failures)
    total_size = sum(j.size for j in jobs if all(j is not f[0] for f in failures))
    click.echo(f"downloaded {done} of {len(jobs)} file(s), {human_size(total_size)}", err=True)
    for job, exc in failures:
        click.echo(f"  failed: {job.label} -> {job.dest}: {error_message(exc)}", err=True)
    if failures:
        raise MitoError(f"{len(failures)} of {len(jobs)} download(s) failed")


@contextmanager
def _nullprogress() -> Iterator[None]:
    yield None


def print_urls(items: Sequence[tuple[str, str, int]]) -> None:
    """``--no-download``: label, size and URL of each item, one per line."""
    for label, url, size in items:
        click.echo(f"{label}\t{human_size(size)}\t{url}")


def output_target(dest: str | None, name: str) -> Path:
    """Where ``-o`` puts a download named ``name``: into DEST when it is a directory or ends in ``/``
    (created if missing), else at DEST itself; ``./name`` without ``-o``."""
    if dest is None:
        return Path(name)
    if dest.endswith(("/", os.sep)) or Path(dest).is_dir():
        return Path(dest) / name
    return Path(dest)


def extract_archives(archives: Sequence[Path]) -> None:
    """Unpack each ``<DIR>/<name>.tar.gz`` into ``<DIR>/<name>/`` and delete it.

    Archives are hostile input: :func:`mitosis.archives.safe_extract` refuses absolute paths,
    ``..``, links leaving the directory, device files and absurd sizes before writing anything.
    """
    for archive in archives:
        target = archive.with_name(archive.name.removesuffix(".tar.gz"))
        try:
            safe_extract(archive, target)
        except UnsafeArchiveError as exc:
            raise MitoError(f"refused to unpack {archive}: {exc}") from None
        except (tarfile.TarError, OSError) as exc:
            raise MitoError(f"cannot unpack {archive}: {exc}") from None
        archive.unlink()
    if archives:
        click.echo(f"unpacked {len(archives)} archive(s)", err=True)
