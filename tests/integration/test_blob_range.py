"""Range requests on the directory blob store, and the SDK resuming a download from its `.part` file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest

from mitosis.client import MitoClient
from tests.support.coordinator import LiveCoordinator

BODY = os.urandom(3 * 1024 * 1024 + 17)


@pytest.fixture
def blob_url(sqlite_coordinator: LiveCoordinator) -> str:
    with sqlite_coordinator.admin() as admin:
        put = admin.post(
            "/groups/mitosis_admin/attachments", json={"key": "r/big.bin", "content_length": len(BODY)}
        )
        assert put.status_code == 200, put.text
        assert httpx.put(put.json()["url"], content=BODY).status_code == 200
        url: str = admin.get("/groups/mitosis_admin/download/attachments/r/big.bin").json()["url"]
    return url


@pytest.mark.parametrize(
    ("header", "status", "content_range", "expected"),
    [
        ("bytes=5-", 206, f"bytes 5-{len(BODY) - 1}/{len(BODY)}", BODY[5:]),
        ("bytes=10-19", 206, f"bytes 10-19/{len(BODY)}", BODY[10:20]),
        ("bytes=-7", 206, f"bytes {len(BODY) - 7}-{len(BODY) - 1}/{len(BODY)}", BODY[-7:]),
        (f"bytes={len(BODY)}-", 416, f"bytes */{len(BODY)}", b""),
        ("bytes=0-1,4-5", 200, None, BODY),
    ],
    ids=["open-ended", "closed", "suffix", "past-the-end", "multi-range-ignored"],
)
def test_range_requests(
    blob_url: str, header: str, status: int, content_range: str | None, expected: bytes
) -> None:
    resp = httpx.get(blob_url, headers={"Range": header})
    assert resp.status_code == status
    assert resp.headers.get("content-range") == content_range
    assert resp.content == expected


def test_sdk_resumes_from_part_file(
    blob_url: str, sqlite_coordinator: LiveCoordinator, tmp_path: Path
) -> None:
    target = tmp_path / "big.bin"
    part = tmp_path / "big.bin.part"
    part.write_bytes(BODY[: 1024 * 1024])
    seen: list[tuple[int, int | None]] = []
    with MitoClient(sqlite_coordinator.url) as client:
        client.download_to(blob_url, target, lambda done, total: seen.append((done, total)))
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(BODY).digest()
    assert not part.exists()
    # The first progress report starts from the bytes already on disk: nothing was fetched twice.
    assert seen[0][0] >= 1024 * 1024
