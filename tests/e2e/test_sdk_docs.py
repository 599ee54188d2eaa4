"""docs/sdk.md's examples run: every ```python block, in order, as its own interpreter, against a
coordinator process with a real worker serving the user the examples log in as.

The examples read MITO_COORDINATOR_ADDR, MITO_USER and MITO_PASSWORD; their credential file lives
in a private XDG config dir. The test logs in (and stores the token) before the worker starts, so
the examples reuse that token and never end the worker's session with a fresh login.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from mitosis.client import MitoClient
from tests.e2e.clientcli import client_env
from tests.support.cluster import WorkerPool
from tests.support.coordinator import LiveCoordinator
from tests.support.databases import Names

pytestmark = pytest.mark.e2e

DOC = Path(__file__).resolve().parents[2] / "docs" / "sdk.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def python_blocks() -> list[str]:
    return BLOCK.findall(DOC.read_text(encoding="utf-8"))


def test_the_guide_has_examples_for_every_topic() -> None:
    blocks = python_blocks()
    assert len(blocks) >= 6
    text = "\n".join(blocks)
    for needle in ("login_with_credentials", "submit_task", "submit_sweep", "wait_task", "download_to",
                   "AsyncMitoClient", "NotFoundError", "client.events(", "client.logs("):  # fmt: skip
        assert needle in text, needle


def test_sdk_examples_run(coord: LiveCoordinator, pool: WorkerPool, names: Names, tmp_path: Path) -> None:
    user, password = names("sdkdoc"), "doc-pw"
    coord.create_user(user, password)
    env = client_env(tmp_path)
    env.update(MITO_COORDINATOR_ADDR=coord.url, MITO_USER=user, MITO_PASSWORD=password)
    cred = tmp_path / "config" / "mitosis" / "credentials"
    with MitoClient(coord.url, credential_path=cred) as c:
        c.login_with_credentials(user, password)
    pool.start_workers(coord, user, coord.login(user, password))
    stored = cred.read_text()

    for i, code in enumerate(python_blocks(), 1):
        proc = subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, (
            f"example {i} failed:\n{code}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    assert cred.read_text() == stored  # the examples reused the stored token
