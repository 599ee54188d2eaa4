"""``mito client config``: merged settings, where each value came from, secrets masked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mitosis.cli.main import cli


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in ("MITO_COORDINATOR_ADDR", "MITO_USER", "MITO_PASSWORD", "MITO_CREDENTIAL_PATH", "MITO_RETAIN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args: str) -> dict[str, dict[str, object]]:
    result = CliRunner().invoke(cli, ["client", *args, "config", "--json"])
    assert result.exit_code == 0, result.output
    data: dict[str, dict[str, object]] = json.loads(result.output)
    return data


def test_every_layer_is_named(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run()["coordinator_addr"] == {"value": "http://127.0.0.1:5000", "source": "default"}
    assert run()["credential_path"]["value"] == str(home / "xdg" / "mitosis" / "credentials")

    glob = home / "xdg" / "mitosis" / "config.toml"
    glob.parent.mkdir(parents=True)
    glob.write_text('[client]\ncoordinator_addr = "http://global:1"\nuser = "g"\npassword = "file-secret"\n')
    extra = home / "extra.toml"
    extra.write_text('[client]\nuser = "from-file"\nretain = true\n')
    monkeypatch.setenv("MITO_CREDENTIAL_PATH", str(home / "cred"))
    out = run("--config", str(extra), "-c", "http://flag:2")
    assert out["coordinator_addr"] == {"value": "http://flag:2", "source": "command line"}
    assert out["user"] == {"value": "from-file", "source": f"--config {extra}"}
    assert out["retain"] == {"value": True, "source": f"--config {extra}"}
    assert out["password"] == {"value": "********", "source": f"global file {glob}"}
    assert out["credential_path"] == {"value": str(home / "cred"), "source": "env MITO_CREDENTIAL_PATH"}


def test_table_masks_the_password(home: Path) -> None:
    result = CliRunner().invoke(cli, ["client", "-p", "hunter2", "config"])
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output and "********" in result.output and "command line" in result.output


def test_a_bad_config_file_is_one_line_and_exit_2(home: Path) -> None:
    bad = home / "bad.toml"
    bad.write_text("[client\n")
    result = CliRunner().invoke(cli, ["client", "--config", str(bad), "config"])
    assert result.exit_code == 2 and "not valid TOML" in result.output
