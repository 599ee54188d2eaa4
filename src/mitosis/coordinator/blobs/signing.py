"""HMAC signing of the filesystem store's blob URLs.

A signed URL carries four query parameters::

    X-Mito-Expires=<unix seconds>&X-Mito-Method=PUT|GET&X-Mito-Length=<bytes, PUT only>&X-Mito-Signature=<hex>

The signature is HMAC-SHA256 over the method, bucket, key, expiry and (for PUT) the length, encoded
as a JSON array so that no choice of key can make two different requests sign the same text. A URL
is therefore good for one method on one key until it expires, and a PUT URL for one exact size.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Method = Literal["GET", "PUT"]

EXPIRES_PARAM = "X-Mito-Expires"
METHOD_PARAM = "X-Mito-Method"
LENGTH_PARAM = "X-Mito-Length"
SIGNATURE_PARAM = "X-Mito-Signature"

_VERSION = "mito-blob-v1"

EXPIRED_MSG = "Signed URL has expired"
INVALID_MSG = "Signed URL is not valid for this request"


class SignatureError(Exception):
    """The request does not carry a usable signature; str(error) is the message for the client."""


class SignatureExpired(SignatureError):
    def __init__(self) -> None:
        super().__init__(EXPIRED_MSG)


class SignatureInvalid(SignatureError):
    def __init__(self) -> None:
        super().__init__(INVALID_MSG)


@dataclass(frozen=True)
class Grant:
    """What a verified URL allows."""

    method: Method
    bucket: str
    key: str
    expires: int
    length: int | None


def _digest(secret: bytes, method: str, bucket: str, key: str, expires: int, length: int | None) -> str:
    message = json.dumps([_VERSION, method, bucket, key, expires, length], separators=(",", ":"))
    return hmac.new(secret, message.encode("utf-8"), hashlib.sha256).hexdigest()


def sign_query(
    secret: bytes, method: Method, bucket: str, key: str, expires: int, length: int | None = None
) -> dict[str, str]:
    """The query parameters that authorise `method` on `bucket`/`key` until `expires` (unix seconds)."""
    if not secret:
        raise ValueError("the blob signing secret must not be empty")
    if (method == "PUT") != (length is not None):
        raise ValueError("a length is required for PUT and not allowed for GET")
    query = {EXPIRES_PARAM: str(expires), METHOD_PARAM: method}
    if length is not None:
        query[LENGTH_PARAM] = str(length)
    query[SIGNATURE_PARAM] = _digest(secret, method, bucket, key, expires, length)
    return query


def _parse_int(text: str | None) -> int | None:
    if text is None or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def verify(
    secret: bytes,
    method: Method,
    bucket: str,
    key: str,
    query: Mapping[str, str],
    now: float | None = None,
) -> Grant:
    """Check that `query` authorises `method` on `bucket`/`key` now.

    Raises SignatureInvalid when the URL was not made for this request (tampered, other key, other
    method, parameters missing) and SignatureExpired when it was, but its time is up.
    """
    expires = _parse_int(query.get(EXPIRES_PARAM))
    signature = query.get(SIGNATURE_PARAM)
    if expires is None or signature is None or query.get(METHOD_PARAM) != method:
        raise SignatureInvalid()
    length: int | None = None
    if method == "PUT":
        length = _parse_int(query.get(LENGTH_PARAM))
        if length is None:
            raise SignatureInvalid()
    expected = _digest(secret, method, bucket, key, expires, length)
    if not hmac.compare_digest(expected, signature):
        raise SignatureInvalid()
    if (time.time() if now is None else now) > expires:
        raise SignatureExpired()
    return Grant(method=method, bucket=bucket, key=key, expires=expires, length=length)
