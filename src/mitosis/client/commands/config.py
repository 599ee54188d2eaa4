"""``config``: the merged client settings and where each value came from, secrets masked.

Layers, later wins key by key: default ← the user config file ← ``--config FILE`` (or
``./config.toml``) ← ``MITO_*`` environment ← command-line flags (see :mod:`mitosis.config`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.table import Table

from mitosis.client.commands import Session, output_options
from mitosis.client.output import Printer
from mitosis.config import ClientSettings, default_credential_path, user_config_dir

SECRET_KEYS = {"password"}
MASK = "********"

pass_session = click.make_pass_decorator(Session)


def describe_source(origin: str | None) -> str:
    """The user-facing name of a layer recorded by :func:`mitosis.config.load`."""
    if origin is None:
        return "default"
    if origin.startswith("env ") or origin == "command line":
        return origin
    if origin == "./config.toml":
        return "./config.toml (current directory)"
    if Path(origin) == user_config_dir() / "config.toml":
        return f"global file {origin}"
    return f"--config {origin}"


def effective(settings: ClientSettings, sources: dict[str, str]) -> dict[str, dict[str, Any]]:
    """``{key: {"value": ..., "source": ...}}`` for every client setting."""
    out: dict[str, dict[str, Any]] = {}
    for key in ClientSettings.model_fields:
        value: Any = getattr(settings, key)
        if key == "credential_path" and value is None:
            value = default_credential_path()
        if key in SECRET_KEYS and value is not None:
            value = MASK
        if isinstance(value, Path):
            value = str(value)
        out[key] = {"value": value, "source": describe_source(sources.get(key))}
    return out


@click.command()
@output_options
@pass_session
def config(session: Session, printer: Printer) -> None:
    """Show the merged client configuration and where each value came from."""
    rows = effective(session.settings, session.sources)

    def human() -> None:
        t = Table(title="client configuration")
        t.add_column("key", style="bold")
        t.add_column("value", overflow="fold")
        t.add_column("source", overflow="fold")
        for key, row in rows.items():
            value = row["value"]
            t.add_row(key, "-" if value is None else str(value), row["source"])
        printer.table(t)

    printer.data(rows, human)
