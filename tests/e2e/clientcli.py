"""How the e2e tests start the real ``mito client`` command line as a subprocess."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def client_argv() -> list[str]:
    """``mito client`` once the root group has it, else the ``client`` group run directly."""
    from mitosis.cli.main import cli

    if "client" in cli.commands:
        return [str(Path(sys.executable).with_name("mito")), "client"]
    return [sys.executable, "-c", "from mitosis.cli.client import client; client(prog_name='mito client')"]


def client_env(home: Path) -> dict[str, str]:
    """An environment whose config, cache and credential dirs are private to the test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MITO_")}
    env.update(
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_CACHE_HOME=str(home / "cache"),
        HOME=str(home),
        COLUMNS="200",
        TERM="xterm",
    )
    return env
