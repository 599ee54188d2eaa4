"""The ``mito`` command line: one module per role, no business logic."""

from __future__ import annotations

import click


def flag_names() -> dict[str, str]:
    """The running command's options as ``{parameter name: longest flag}`` (``db_url`` → ``--db``)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return {}
    return {p.name: max(p.opts, key=len) for p in ctx.command.params if p.name and p.opts}
