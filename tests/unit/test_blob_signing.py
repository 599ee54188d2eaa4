"""HMAC URL signing of the filesystem blob store, and its key checks."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest

from mitosis.coordinator.blobs import FsBlobStore, InvalidBlobKey, signing
from mitosis.coordinator.blobs.fs import check_key

SECRET = b"unit-test-secret"


def test_round_trip_put() -> None:
    expires = int(time.time()) + 60
    query = signing.sign_query(SECRET, "PUT", "artifacts", "t/result.tar.gz", expires, 1234)
    assert set(query) == {"X-Mito-Expires", "X-Mito-Method", "X-Mito-Length", "X-Mito-Signature"}
    grant = signing.verify(SECRET, "PUT", "artifacts", "t/result.tar.gz", query)
    assert grant == signing.Grant("PUT", "artifacts", "t/result.tar.gz", expires, 1234)


def test_round_trip_get_has_no_length() -> None:
    expires = int(time.time()) + 60
    query = signing.sign_query(SECRET, "GET", "attachments", "g/a b/ü.txt", expires)
    assert "X-Mito-Length" not in query
    assert signing.verify(SECRET, "GET", "attachments", "g/a b/ü.txt", query).length is None


@pytest.mark.parametrize(
    ("change", "method", "bucket", "key"),
    [
        ("signature", "PUT", "artifacts", "k"),
        ("none", "PUT", "artifacts", "other"),
        ("none", "PUT", "attachments", "k"),
        ("none", "GET", "artifacts", "k"),
        ("length", "PUT", "artifacts", "k"),
        ("expires", "PUT", "artifacts", "k"),
        ("secret", "PUT", "artifacts", "k"),
        ("missing", "PUT", "artifacts", "k"),
    ],
)
def test_refused(change: str, method: signing.Method, bucket: str, key: str) -> None:
    query = signing.sign_query(SECRET, "PUT", "artifacts", "k", int(time.time()) + 60, 10)
    secret = SECRET
    if change == "signature":
        sig = query["X-Mito-Signature"]
        query["X-Mito-Signature"] = ("0" if sig[0] != "0" else "1") + sig[1:]
    elif change == "length":
        query["X-Mito-Length"] = "11"
    elif change == "expires":
        query["X-Mito-Expires"] = str(int(query["X-Mito-Expires"]) + 3600)
    elif change == "secret":
        secret = b"another-secret"
    elif change == "missing":
        del query["X-Mito-Signature"]
    with pytest.raises(signing.SignatureInvalid, match="not valid for this request"):
        signing.verify(secret, method, bucket, key, query)


def test_get_url_is_not_a_put_url() -> None:
    query = signing.sign_query(SECRET, "GET", "artifacts", "k", int(time.time()) + 60)
    with pytest.raises(signing.SignatureInvalid):
        signing.verify(
            SECRET, "PUT", "artifacts", "k", {**query, "X-Mito-Method": "PUT", "X-Mito-Length": "0"}
        )


def test_expired() -> None:
    expires = int(time.time()) - 1
    query = signing.sign_query(SECRET, "GET", "artifacts", "k", expires)
    with pytest.raises(signing.SignatureExpired, match="Signed URL has expired"):
        signing.verify(SECRET, "GET", "artifacts", "k", query)
    # Valid up to and including the expiry second.
    assert signing.verify(SECRET, "GET", "artifacts", "k", query, now=expires).expires == expires


def test_tampered_expired_url_is_invalid_not_expired() -> None:
    query = signing.sign_query(SECRET, "GET", "artifacts", "k", int(time.time()) - 10)
    query["X-Mito-Signature"] = "00" * 32
    with pytest.raises(signing.SignatureInvalid):
        signing.verify(SECRET, "GET", "artifacts", "k", query)


def test_sign_requires_length_exactly_for_put() -> None:
    with pytest.raises(ValueError):
        signing.sign_query(SECRET, "PUT", "artifacts", "k", 1)
    with pytest.raises(ValueError):
        signing.sign_query(SECRET, "GET", "artifacts", "k", 1, 5)
    with pytest.raises(ValueError):
        signing.sign_query(b"", "GET", "artifacts", "k", 1)


@pytest.mark.parametrize(
    "key", ["", "/etc/passwd", "../x", "a/../../x", "a//b", "a/", "./a", "a/./b", "a\x00b", "..", "\udcff"]
)
def test_unsafe_keys_rejected(key: str) -> None:
    with pytest.raises(InvalidBlobKey):
        check_key(key)


@pytest.mark.parametrize("key", ["a", "a/b/c.tar.gz", "..a", "a..", "a b/ü?#%&=+.txt", "x/.hidden"])
def test_ordinary_keys_accepted(key: str) -> None:
    check_key(key)


async def test_presigned_url_shape(tmp_path: Path) -> None:
    store = FsBlobStore(root=tmp_path, public_url="http://127.0.0.1:9/", secret=SECRET)
    key = "grp/dir/a b?#%.txt"
    url = await store.presign_put("attachments", key, 42, 3600)
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == "http://127.0.0.1:9"
    assert parts.path.startswith("/blobs/attachments/")
    assert unquote(parts.path.removeprefix("/blobs/attachments/")) == key
    query = dict(parse_qsl(parts.query))
    assert query["X-Mito-Method"] == "PUT" and query["X-Mito-Length"] == "42"
    assert abs(int(query["X-Mito-Expires"]) - (time.time() + 3600)) < 5
    assert store.verify("PUT", "attachments", key, query).length == 42
    with pytest.raises(InvalidBlobKey):
        await store.presign_get("attachments", "../escape", 60)
    with pytest.raises(InvalidBlobKey):
        await store.presign_put("attachments", "ok", -1, 60)
