"""Shell completion: ``mito completion SHELL`` and click's completion of the real command tree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.shell_completion import BashComplete, FishComplete, ZshComplete
from click.testing import CliRunner

from mitosis.cli.main import cli


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script_is_printed(shell: str) -> None:
    result = CliRunner().invoke(cli, ["completion", shell])
    assert result.exit_code == 0, result.output
    assert "_MITO_COMPLETE" in result.output and len(result.output) > 200


def test_unknown_shell_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["completion", "tcsh"])
    assert result.exit_code == 2 and "tcsh" in result.output


def _values(
    cls: type[BashComplete] | type[ZshComplete] | type[FishComplete], args: list[str], incomplete: str
) -> list[str]:
    return [item.value for item in cls(cli, {}, "mito", "_MITO_COMPLETE").get_completions(args, incomplete)]


def test_comp_words_complete_commands_flags_and_choices() -> None:
    # COMP_WORDS="mito client ta", COMP_CWORD=2
    assert _values(BashComplete, ["client"], "ta") == ["tasks"]
    assert "completion" in _values(BashComplete, [], "co")
    assert {"submit", "submit-many", "wait", "wait-many"} <= set(
        _values(ZshComplete, ["client", "tasks"], "")
    )
    assert "--matrix" in _values(FishComplete, ["client", "tasks", "submit"], "--ma")
    assert _values(BashComplete, ["client", "tasks", "artifacts", "download-many"], "r") == ["result"]
    assert _values(BashComplete, ["client", "tasks", "query", "-s"], "fin") == ["finished"]
    assert _values(ZshComplete, ["client", "tasks", "watch", "-s"], "ready,c") == ["ready,cancelled"]
    assert _values(BashComplete, ["client", "tasks", "get", "x", "--output"], "y") == ["yaml"]


def test_the_installed_entry_point_answers_completion_requests(tmp_path: Path) -> None:
    mito = Path(sys.executable).with_name("mito")
    env = {**os.environ, "COMP_WORDS": "mito client ta", "COMP_CWORD": "2", "_MITO_COMPLETE": "bash_complete"}
    env["XDG_CONFIG_HOME"] = str(tmp_path)
    out = subprocess.run([str(mito)], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.split() == ["plain,tasks"]
    script = subprocess.run([str(mito), "completion", "bash"], capture_output=True, text=True, timeout=60)
    assert script.returncode == 0 and "complete -o nosort -F _mito_completion mito" in script.stdout
