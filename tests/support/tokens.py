"""Forged tokens for authorization tests: expired ones, and ones signed by a key the coordinator never saw.

The wire format is 0.6.8's: ``base64(standard, padded)`` of a compact EdDSA JWT with ``sub``, ``exp``,
``sign`` (and our ``typ``). Forging starts from the claims of a real token so that the only fault in a
forged token is the one under test.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def claims_of(token: str) -> dict[str, Any]:
    """The claims of a token, read without verifying it."""
    compact = base64.b64decode(token, validate=True).decode()
    payload = compact.split(".")[1]
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return data


def real_key(data_dir: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key((data_dir / "keys" / "private.pem").read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


def sign_token(claims: dict[str, Any], key: Ed25519PrivateKey) -> str:
    compact = jwt.encode(claims, key, algorithm="EdDSA")
    return base64.b64encode(compact.encode()).decode()


def reissued(token: str, key: Ed25519PrivateKey, **changes: Any) -> str:
    """The same claims as ``token`` with ``changes`` applied (a value of None drops the claim)."""
    claims = {**claims_of(token), **changes}
    return sign_token({k: v for k, v in claims.items() if v is not None}, key)


def expired(token: str, data_dir: Path, seconds_ago: int = 3600) -> str:
    """``token`` with ``exp`` in the past, signed by the coordinator's own key."""
    return reissued(token, real_key(data_dir), exp=int(time.time()) - seconds_ago)


def foreign(token: str) -> str:
    """``token`` (still unexpired) signed by a fresh Ed25519 key."""
    return reissued(token, Ed25519PrivateKey.generate(), exp=int(time.time()) + 3600)
