"""Schemathesis over our whole OpenAPI document (issue 8): zero 5xx and zero responses that break
the documented schema, authenticated as a normal user and as the admin.

It runs the ``st`` command line against a `mito coordinator` process on SQLite; the example count
per operation is kept small for CI (``MITO_SCHEMATHESIS_EXAMPLES`` raises it for a longer run).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import databases
from tests.support.coordinator import LiveCoordinator, coordinator_process

pytestmark = pytest.mark.e2e

EXAMPLES = os.environ.get("MITO_SCHEMATHESIS_EXAMPLES", "4")


@pytest.fixture(scope="module")
def coord(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveCoordinator]:
    tmp = tmp_path_factory.mktemp("st")
    with coordinator_process(tmp / "coord", databases.sqlite_url(tmp)) as c:
        yield c


@pytest.mark.parametrize("who", ["user", "admin"])
def test_no_5xx_and_no_schema_violation(coord: LiveCoordinator, who: str) -> None:
    token = coord.create_user("stuser", "pw") if who == "user" else coord.login()
    st = Path(sys.executable).parent / "st"
    proc = subprocess.run(
        [
            str(st), "run", f"{coord.url}/openapi.json", "-H", f"Authorization: Bearer {token}",
            "-c", "not_a_server_error,response_schema_conformance", "-n", EXAMPLES,
            "--phases", "examples,fuzzing", "--request-timeout", "20", "--seed", "8", "--no-color",
            "-w", "2",
        ],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    counts = re.search(r"(\d+) generated, (.+)", out)
    assert proc.returncode == 0, out[-6000:]
    assert counts is not None and int(counts.group(1)) > 100, out[-3000:]
    assert "failed" not in counts.group(2), out[-6000:]
    print(f"RESULT schemathesis who={who} {counts.group(0).strip()}")
