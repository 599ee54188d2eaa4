"""Token checks: a verified signature is remembered, its expiry is still checked on every use."""

from __future__ import annotations

import time
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mitosis.coordinator import auth, errors
from mitosis.coordinator.auth import TokenService


def service() -> TokenService:
    key = Ed25519PrivateKey.generate()
    return TokenService(key, key.public_key())


def test_a_remembered_token_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = service()
    token = tokens.issue("alice", timedelta(seconds=10), 1, "user")
    assert tokens.decode(token).sub == "alice"
    assert tokens.decode(token).sub == "alice"  # from the cache
    later = time.time() + 10 + auth.LEEWAY_SECONDS + 1
    monkeypatch.setattr(auth.time, "time", lambda: later)
    with pytest.raises(errors.ApiError) as info:
        tokens.decode(token)
    assert info.value.status == 401
    assert tokens.decode(token, verify_exp=False).sub == "alice"  # callers that judge expiry themselves


def test_forgeries_are_never_remembered() -> None:
    tokens, other = service(), service()
    forged = other.issue("alice", timedelta(hours=1), 1, "user")
    for _ in range(2):
        with pytest.raises(errors.ApiError) as info:
            tokens.decode(forged)
        assert info.value.status == 401
    assert forged not in tokens._verified
    none_alg = jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, key=None, algorithm="none")
    import base64

    with pytest.raises(errors.ApiError):
        tokens.decode(base64.b64encode(none_alg.encode()).decode())


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "VERIFIED_CACHE_SIZE", 8)
    tokens = service()
    issued = [tokens.issue(f"u{i}", timedelta(hours=1), 1, "user") for i in range(20)]
    for token in issued:
        tokens.decode(token)
    assert len(tokens._verified) == 8
    assert tokens.decode(issued[0]).sub == "u0"  # evicted, verified again
