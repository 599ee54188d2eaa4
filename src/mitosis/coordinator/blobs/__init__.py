"""Where artifact and attachment bytes live.

Two implementations of the BlobStore protocol (see ``base``):

* ``FsBlobStore(root, public_url, secret)``: a local directory; its URLs point at the coordinator's
  own ``/blobs/...`` routes (``mitosis.coordinator.routes.blobs``) and are HMAC-signed (``signing``).
* ``S3BlobStore(endpoint_url, access_key, secret_key, region, artifacts_bucket, attachments_bucket,
  force_path_style)``: any S3-compatible service with SigV4 presigned URLs.

``make_blob_store("fs", root=..., public_url=..., secret=...)`` and ``make_blob_store("s3", ...)``
build either from keyword arguments named as in the constructors, e.g. from settings.
Both raise BlobError for storage failures and InvalidBlobKey (a BlobError and a ValueError) for a
key or length that cannot be presigned, which callers answer with 400.
"""

from __future__ import annotations

from typing import Any, Literal

from mitosis.coordinator.blobs.base import BUCKETS, BlobError, BlobStore, Bucket, InvalidBlobKey
from mitosis.coordinator.blobs.fs import FsBlobStore
from mitosis.coordinator.blobs.s3 import S3BlobStore

__all__ = [
    "BUCKETS",
    "BlobError",
    "BlobStore",
    "Bucket",
    "FsBlobStore",
    "InvalidBlobKey",
    "S3BlobStore",
    "make_blob_store",
]


def make_blob_store(kind: Literal["fs", "s3"], **kwargs: Any) -> BlobStore:
    """Build the store named by `kind` from the constructor's keyword arguments."""
    if kind == "fs":
        return FsBlobStore(**kwargs)
    if kind == "s3":
        return S3BlobStore(**kwargs)
    raise ValueError(f"Unknown blob store kind {kind!r}; expected 'fs' or 's3'")
