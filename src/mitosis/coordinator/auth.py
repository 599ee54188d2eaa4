"""Tokens, password hashing, key bootstrap and the request identities (user, admin, worker).

Tokens are 0.6.8's: ``base64(standard, padded)`` of an EdDSA JWT with ``sub``, ``exp`` and
``sign`` claims. We add ``typ`` ("user" / "worker", DECISIONS A5) so a token of one kind is
refused on the other kind's paths; tokens without ``typ`` (issued by 0.6.8) are told apart by their
subject as before. Stored password hashes are Argon2id over the 16 md5 bytes with 0.6.8's
parameters, so existing databases keep working.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import jwt
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from fastapi import Request
from sqlalchemy import select

from mitosis.coordinator import errors
from mitosis.coordinator.db import raw
from mitosis.coordinator.db.tables import users, workers
from mitosis.wire.enums import UserState

log = logging.getLogger(__name__)

_hasher = PasswordHasher(
    time_cost=2, memory_cost=19456, parallelism=1, hash_len=32, salt_len=16, type=Type.ID
)
LEEWAY_SECONDS = 60
VERIFIED_CACHE_SIZE = 4096


async def hash_password(md5: bytes) -> str:
    # Argon2 costs ~20 ms of CPU: keep it off the event loop.
    return await anyio.to_thread.run_sync(_hasher.hash, md5)


async def verify_password(stored: str, md5: bytes) -> bool:
    def check() -> bool:
        try:
            return _hasher.verify(stored, md5)
        except (VerificationError, InvalidHashError):
            return False

    return await anyio.to_thread.run_sync(check)


def new_sign() -> int:
    return 1 + secrets.randbelow(2**32)


# ----------------------------------------------------------------------------------------- keys


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def load_or_create_keys(private_path: Path, public_path: Path) -> tuple[Ed25519PrivateKey, Ed25519PublicKey]:
    """Load the Ed25519 pair; create both (mode 0600) when neither exists yet."""
    if not private_path.exists() and not public_path.exists():
        key = Ed25519PrivateKey.generate()
        _write_private(
            private_path,
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
        _write_private(
            public_path,
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        )
        log.warning("generated a new token signing key pair: %s and %s", private_path, public_path)
    for p in (private_path, public_path):
        if not p.exists():
            raise FileNotFoundError(f"token key file {p} is missing (both keys must exist, or neither)")
    priv = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
    pub = serialization.load_pem_public_key(public_path.read_bytes())
    if not isinstance(priv, Ed25519PrivateKey) or not isinstance(pub, Ed25519PublicKey):
        raise ValueError(f"{private_path} / {public_path} must hold an Ed25519 key pair")
    return priv, pub


def ensure_admin_password(configured: str | None, key_dir: Path) -> tuple[str, bool]:
    """The bootstrap admin password: the configured one, or a generated one kept in a 0600 file.

    Returns (password, newly_generated). A generated password is never guessable, whatever the bind.
    """
    if configured:
        return configured, False
    path = key_dir / "admin-password"
    if path.exists():
        return path.read_text(encoding="utf-8").strip(), False
    password = secrets.token_urlsafe(18)
    _write_private(path, password.encode())
    return password, True


# --------------------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class TokenClaims:
    sub: str
    exp: int
    sign: int
    typ: str | None


class TokenService:
    def __init__(self, private_key: Ed25519PrivateKey, public_key: Ed25519PublicKey) -> None:
        self._private = private_key
        self._public = public_key
        self._verified: dict[str, TokenClaims] = {}

    def issue(self, sub: str, ttl: timedelta, sign: int, typ: str) -> str:
        exp = int(time.time() + ttl.total_seconds())
        compact = jwt.encode(
            {"sub": sub, "exp": exp, "sign": sign, "typ": typ}, self._private, algorithm="EdDSA"
        )
        return base64.b64encode(compact.encode()).decode()

    def decode(self, token: str, *, verify_exp: bool = True) -> TokenClaims:
        """The claims of a token this coordinator's key signed; 401 ``Invalid token`` otherwise.

        A signature, once verified, stays valid: verified tokens are remembered (a bounded cache)
        so a worker's every request does not pay for an Ed25519 verification. Expiry is checked on
        every call."""
        claims = self._verified.get(token)
        if claims is None:
            claims = self._verify(token)
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                self._verified.pop(next(iter(self._verified)))
            self._verified[token] = claims
        if verify_exp and claims.exp + LEEWAY_SECONDS < time.time():
            raise errors.invalid_token()
        return claims

    def _verify(self, token: str) -> TokenClaims:
        try:
            compact = base64.b64decode(token, validate=True).decode()
            data: dict[str, Any] = jwt.decode(
                compact,
                self._public,
                algorithms=["EdDSA"],
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "sub"], "verify_exp": False},
            )
        except (binascii.Error, UnicodeDecodeError, jwt.PyJWTError, ValueError):
            raise errors.invalid_token() from None
        sign = data.get("sign", 0)
        if not isinstance(data["sub"], str) or not isinstance(sign, int) or not isinstance(data["exp"], int):
            raise errors.invalid_token()
        typ = data.get("typ")
        return TokenClaims(
            sub=data["sub"], exp=data["exp"], sign=sign, typ=typ if isinstance(typ, str) else None
        )


# ----------------------------------------------------------------------------------- identities


@dataclass(frozen=True)
class User:
    id: int
    username: str
    admin: bool


@dataclass(frozen=True)
class Worker:
    id: int
    worker_id: uuid.UUID
    creator_id: int


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise errors.ApiError(400, "Header of type `authorization` was missing")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise errors.ApiError(400, "Header of type `authorization` is not a Bearer token")
    return token.strip()


_USER_BY_NAME = "SELECT id, username, admin, state, auth_signature FROM users WHERE username = $1"


def _user_token(request: Request, token: str) -> TokenClaims:
    """A user token's claims, checked as far as they can be without the database."""
    claims: TokenClaims = request.app.state.ctx.tokens.decode(token, verify_exp=False)
    if claims.typ == "worker":
        raise errors.permission_denied("a worker token cannot be used on user paths")
    # As 0.6.8: past the JWT library's leeway the token is invalid; inside it, the user check
    # still refuses an expired token with WrongCredentials.
    now = time.time()
    if claims.exp + LEEWAY_SECONDS < now:
        raise errors.invalid_token()
    if claims.exp < now:
        raise errors.wrong_credentials()
    return claims


async def user_token(request: Request) -> TokenClaims:
    """For a route that checks the user row itself within its own statement (``POST /tasks`` on
    PostgreSQL): the token's claims, valid as far as the token goes. The route must fall back to
    :func:`current_user` whenever its statement did not confirm the user."""
    return _user_token(request, _bearer(request))


async def _load_user(request: Request, token: str, *, admin: bool) -> User:
    ctx = request.app.state.ctx
    claims = _user_token(request, token)
    row: Any
    if raw.available(ctx.engine):
        # Every user request starts here: the plain asyncpg statement (db/raw.py).
        async with raw.connection(ctx.engine) as pg:
            row = await pg.fetchrow(_USER_BY_NAME, claims.sub)
    else:
        async with ctx.engine.connect() as conn:
            # One read, no transaction: saves BEGIN and ROLLBACK round trips on every request.
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            row = (
                (
                    await conn.execute(
                        select(
                            users.c.id, users.c.username, users.c.admin, users.c.state, users.c.auth_signature
                        ).where(users.c.username == claims.sub)
                    )
                )
                .mappings()
                .first()
            )
    if row is None:
        raise errors.wrong_credentials()
    if admin and not row["admin"]:
        raise errors.permission_denied("this needs a system administrator")
    if row["state"] != UserState.Active.code:
        raise errors.permission_denied(
            f"user {row['username']} is {UserState.from_code(row['state']).value.lower()}"
        )
    if row["auth_signature"] != claims.sign:
        raise errors.wrong_credentials()
    return User(id=row["id"], username=row["username"], admin=row["admin"])


async def current_user(request: Request) -> User:
    return await _load_user(request, _bearer(request), admin=False)


async def current_admin(request: Request) -> User:
    return await _load_user(request, _bearer(request), admin=True)


_WORKER_BY_UUID = "SELECT id, worker_id, creator_id, expires_at FROM workers WHERE worker_id = $1"


async def current_worker(request: Request) -> Worker:
    """The calling worker. Its token is valid while its row exists and its lifetime lasts (S15)."""
    ctx = request.app.state.ctx
    claims: TokenClaims = ctx.tokens.decode(_bearer(request), verify_exp=False)
    if claims.typ == "user":
        raise errors.permission_denied("a user token cannot be used on worker paths")
    try:
        worker_uuid = uuid.UUID(claims.sub)
    except ValueError:
        raise errors.invalid_token() from None
    row: Any
    if raw.available(ctx.engine):
        # Every worker request starts here: the plain asyncpg statement (db/raw.py).
        async with raw.connection(ctx.engine) as pg:
            row = await pg.fetchrow(_WORKER_BY_UUID, worker_uuid)
    else:
        async with ctx.engine.connect() as conn:
            # One read, no transaction: saves BEGIN and ROLLBACK round trips on every request.
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            row = (
                (
                    await conn.execute(
                        select(
                            workers.c.id, workers.c.worker_id, workers.c.creator_id, workers.c.expires_at
                        ).where(workers.c.worker_id == worker_uuid)
                    )
                )
                .mappings()
                .first()
            )
    if row is None:
        raise errors.wrong_credentials()
    now = datetime.now(UTC)
    expires_at = row["expires_at"]
    if expires_at is not None and expires_at < now:
        raise errors.wrong_credentials()
    if expires_at is None and claims.typ is None and claims.exp + LEEWAY_SECONDS < now.timestamp():
        # A 0.6.8-issued worker token keeps 0.6.8's expiry.
        raise errors.wrong_credentials()
    return Worker(id=row["id"], worker_id=row["worker_id"], creator_id=row["creator_id"])
