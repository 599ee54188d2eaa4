"""How store failures that reach the API's error handlers are answered (not a bare 500)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from mitosis.coordinator.blobs.base import BlobError, InvalidBlobKey
from mitosis.coordinator.errors import install_handlers


def _client() -> TestClient:
    app = FastAPI()
    install_handlers(app)

    @app.get("/store-down")
    async def store_down() -> None:
        raise BlobError("S3 stat artifacts/x at http://127.0.0.1:1 failed: 403: Forbidden")

    @app.get("/bad-key")
    async def bad_key() -> None:
        raise InvalidBlobKey("blob key 'a//b' has an empty segment")

    @app.get("/bug")
    async def bug() -> None:
        raise RuntimeError("boom")

    return TestClient(app, raise_server_exceptions=False)


def test_a_failing_blob_store_is_a_503_naming_the_failure() -> None:
    r = _client().get("/store-down")
    assert r.status_code == 503
    assert r.headers["retry-after"] == "5"
    assert r.json() == {
        "msg": "Coordinator cannot use its blob store "
        "(S3 stat artifacts/x at http://127.0.0.1:1 failed: 403: Forbidden); retry shortly"
    }


def test_an_invalid_blob_key_is_a_400_and_other_errors_stay_500() -> None:
    client = _client()
    r = client.get("/bad-key")
    assert (r.status_code, r.json()) == (400, {"msg": "blob key 'a//b' has an empty segment"})
    r = client.get("/bug")
    assert (r.status_code, r.json()) == (500, {"msg": "Internal server error"})
