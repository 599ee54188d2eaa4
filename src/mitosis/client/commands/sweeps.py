"""``tasks submit --matrix``: a parameter sweep from the command line.

Validation happens before any request (a bad matrix is a usage error, exit 2). The expansion goes
through the SDK's ``submit_sweep`` (``POST /tasks/submit`` in chunks) under a progress bar; the
accepted tasks' uuids go to stdout one per line (or ``--uuids-file``, opened before anything is
sent and written chunk by chunk), refused ones are summarised on stderr and make the command exit 1.
Ctrl-C part-way prints the uuids already accepted and exits 130.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mitosis.client import sweep
from mitosis.client.commands import EXIT_ERROR, EXIT_INTERRUPTED, Session
from mitosis.client.commands.transfer import want_progress
from mitosis.client.errors import SweepError, SweepInterrupted
from mitosis.client.output import Printer
from mitosis.client.sdk import SubmitResult, SweepProgress
from mitosis.wire import models as m

SHOWN_FAILURES = 20


def parse_or_usage(items: Sequence[str]) -> dict[str, list[str]]:
    try:
        return sweep.parse_matrix(items)
    except SweepError as exc:
        raise click.BadParameter(str(exc), param_hint="--matrix") from None


def check_or_usage(template: m.SubmitTaskReq, matrix: sweep.Matrix, max_tasks: int) -> int:
    try:
        return sweep.check_matrix(template, matrix, max_tasks)
    except SweepError as exc:
        raise click.UsageError(str(exc)) from None


@contextmanager
def count_progress(what: str, enabled: bool, total: int) -> Iterator[SweepProgress | None]:
    """A bar counting tasks (``12/40 tasks``) on stderr, or ``None`` when disabled."""
    if not enabled:
        yield None
        return
    bar = Progress(
        TextColumn(what),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("tasks"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )
    with bar:
        task = bar.add_task("submit", total=total)

        def update(done: int, new_total: int) -> None:
            bar.update(task, completed=done, total=new_total)

        yield update


def _describe(values: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in values.items())


def _uuid_lines(results: Sequence[SubmitResult]) -> str:
    return "".join(f"{r.Ok.uuid}\n" for r in results if isinstance(r, m.SubmitOk))


@contextmanager
def uuids_sink(path: Path | None) -> Iterator[IO[str] | None]:
    """``--uuids-file`` opened before anything is sent (even the login): a path that cannot be
    written is a usage error that costs nothing, not a sweep submitted with its uuids lost."""
    if path is None:
        yield None
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        sink = path.open("w", encoding="utf-8")
    except OSError as exc:
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        reason = f"{blocker} is not a directory" if blocker else exc.strerror or str(exc)
        raise click.BadParameter(f"cannot write {path}: {reason}", param_hint="--uuids-file") from None
    with sink:
        yield sink


def _report(
    results: Sequence[SubmitResult], matrix: sweep.Matrix, uuids_file: Path | None, printer: Printer
) -> int:
    """Print the uuids (unless they went to ``uuids_file``) and the failure summary; return how
    many tasks were refused."""
    uuids = [str(r.Ok.uuid) for r in results if isinstance(r, m.SubmitOk)]
    if printer.fmt != "table":
        printer.data(m.TasksSubmitResp(results=list(results)), lambda: None)
    elif uuids_file is None:
        for u in uuids:
            printer.line(u)
    failed = [
        (values, r.Err.msg)
        for values, r in zip(sweep.combinations(matrix), results, strict=False)
        if isinstance(r, m.SubmitErr)
    ]
    if failed:
        click.echo(f"{len(failed)} of {len(results)} task(s) were refused:", err=True)
        for values, msg in failed[:SHOWN_FAILURES]:
            click.echo(f"  {_describe(values)}: {msg}", err=True)
        if len(failed) > SHOWN_FAILURES:
            click.echo(f"  ... and {len(failed) - SHOWN_FAILURES} more", err=True)
    return len(failed)


def run_sweep(
    session: Session,
    template: m.SubmitTaskReq,
    matrix: sweep.Matrix,
    *,
    total: int,
    chunk: int,
    max_tasks: int,
    uuids_file: Path | None,
    sink: IO[str] | None,
    pb: bool,
    printer: Printer,
) -> None:
    """Submit the sweep; ``sink`` is ``uuids_file`` opened by :func:`uuids_sink`."""
    accepted: list[SubmitResult] = []

    def keep(results: list[SubmitResult]) -> None:
        # Written as each chunk is accepted: an interrupted sweep's file lists the tasks that exist.
        accepted.extend(results)
        session.remember(tasks=[r.Ok.uuid for r in results if isinstance(r, m.SubmitOk)])
        if sink is not None:
            sink.write(_uuid_lines(results))
            sink.flush()

    try:
        client = session.client()
        with count_progress("submitting", want_progress(pb), total) as progress:
            results = client.submit_sweep(template, matrix, chunk, progress, max_tasks, on_chunk=keep)
    except SweepInterrupted as exc:
        _report(exc.results, matrix, uuids_file, printer)
        raise
    except KeyboardInterrupt:
        if sink is not None:  # Ctrl-C may have landed between a chunk's arrival and its write
            sink.seek(0)
            sink.truncate()
            sink.write(_uuid_lines(accepted))
        _interrupted(
            accepted, template, matrix, total=total, chunk=chunk, uuids_file=uuids_file, printer=printer
        )
        click.get_current_context().exit(EXIT_INTERRUPTED)
    failed = _report(results, matrix, uuids_file, printer)
    where = f"; uuids written to {uuids_file}" if uuids_file is not None else ""
    click.echo(
        f"submitted {len(results) - failed} of {total} task(s) to group {template.group_name}{where}",
        err=True,
    )
    if failed:
        click.get_current_context().exit(EXIT_ERROR)


def _interrupted(
    accepted: Sequence[SubmitResult],
    template: m.SubmitTaskReq,
    matrix: sweep.Matrix,
    *,
    total: int,
    chunk: int,
    uuids_file: Path | None,
    printer: Printer,
) -> None:
    """Ctrl-C during the submission: say which tasks exist, so the rest can be resubmitted."""
    failed = _report(accepted, matrix, uuids_file, printer)
    where = f" (uuids in {uuids_file})" if uuids_file is not None else " (uuids above)"
    # A label every task shares (no placeholder in it) finds them all.
    common = next((label for label in template.labels if "{" not in label), None)
    find = f"-g {template.group_name}" + (f" -l {common}" if common else "")
    click.echo(
        f"interrupted: {len(accepted) - failed} of {total} task(s) were submitted{where}; the batch "
        f"being sent (up to {chunk} more) may have been submitted too: check with "
        f"`mito client tasks query {find}`",
        err=True,
    )
