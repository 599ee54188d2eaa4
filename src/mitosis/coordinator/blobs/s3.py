"""Blobs in an S3-compatible service (AWS, MinIO, Ceph, SeaweedFS), moved through SigV4 presigned URLs.

Presigned URLs sign the host only (no Content-Type, no Content-Length), so any client that sends a
plain PUT with a Content-Length header, as pynetmito does, can use them. Presigning is local CPU
work and runs inline; calls that reach the network (bucket creation, head, delete) run boto3 in a
worker thread. Every botocore failure surfaces as BlobError.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from mitosis.coordinator.blobs.base import BlobError, Bucket, InvalidBlobKey

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_T = TypeVar("_T")

_DELETE_BATCH = 1000
_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}
_BUCKET_EXISTS_CODES = {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}


def _describe(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error: Any = exc.response.get("Error", {})
        code = error.get("Code", "Unknown")
        message = error.get("Message") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
        return f"{code}: {message}"
    return str(exc)


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3BlobStore:
    def __init__(
        self,
        endpoint_url: str,
        access_key: str,
        secret_key: str,
        region: str,
        artifacts_bucket: str,
        attachments_bucket: str,
        force_path_style: bool,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.region = region
        self.buckets: dict[Bucket, str] = {"artifacts": artifacts_bucket, "attachments": attachments_bucket}
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path" if force_path_style else "auto"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            connect_timeout=10,
            read_timeout=60,
            retries={"mode": "standard", "max_attempts": 3},
        )
        self._client: S3Client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=config,
        )

    async def start(self) -> None:
        for name in self.buckets.values():
            await asyncio.to_thread(self._ensure_bucket, name)

    def _ensure_bucket(self, name: str) -> None:
        try:
            self._client.head_bucket(Bucket=name)
            return
        except ClientError as exc:
            if _error_code(exc) not in _MISSING_CODES | {"NoSuchBucket"}:
                raise BlobError(
                    f"Cannot check S3 bucket {name!r} at {self.endpoint_url}: {_describe(exc)}"
                ) from exc
        except BotoCoreError as exc:
            raise BlobError(f"Cannot reach S3 at {self.endpoint_url}: {_describe(exc)}") from exc
        try:
            if self.region == "us-east-1":
                self._client.create_bucket(Bucket=name)
            else:
                self._client.create_bucket(
                    Bucket=name,
                    CreateBucketConfiguration={"LocationConstraint": self.region},  # type: ignore[typeddict-item]
                )
        except ClientError as exc:
            if _error_code(exc) not in _BUCKET_EXISTS_CODES:
                raise BlobError(
                    f"Cannot create S3 bucket {name!r} at {self.endpoint_url}: {_describe(exc)}"
                ) from exc
        except BotoCoreError as exc:
            raise BlobError(f"Cannot reach S3 at {self.endpoint_url}: {_describe(exc)}") from exc

    async def close(self) -> None:
        self._client.close()

    def _presign(self, operation: str, method: str, bucket: Bucket, key: str, expires_in: int) -> str:
        if not key:
            raise InvalidBlobKey("Blob key must not be empty")
        try:
            return self._client.generate_presigned_url(
                operation,
                Params={"Bucket": self.buckets[bucket], "Key": key},
                ExpiresIn=expires_in,
                HttpMethod=method,
            )
        except (BotoCoreError, ClientError) as exc:
            raise BlobError(f"Cannot presign {method} for {bucket}/{key}: {_describe(exc)}") from exc

    async def presign_put(self, bucket: Bucket, key: str, content_length: int, expires_in: int) -> str:
        if content_length < 0:
            raise InvalidBlobKey(f"Invalid content length {content_length}")
        return self._presign("put_object", "PUT", bucket, key, expires_in)

    async def presign_get(self, bucket: Bucket, key: str, expires_in: int) -> str:
        return self._presign("get_object", "GET", bucket, key, expires_in)

    async def delete(self, bucket: Bucket, key: str) -> None:
        def run() -> None:
            self._client.delete_object(Bucket=self.buckets[bucket], Key=key)

        await self._call(run, f"delete {bucket}/{key}")

    async def delete_many(self, bucket: Bucket, keys: Sequence[str]) -> None:
        name = self.buckets[bucket]
        keys = list(keys)
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start : start + _DELETE_BATCH]

            def run(batch: list[str] = batch) -> None:
                reply = self._client.delete_objects(
                    Bucket=name, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
                )
                failures = [e for e in reply.get("Errors", []) if e.get("Code") not in _MISSING_CODES]
                if failures:
                    first = failures[0]
                    raise BlobError(
                        f"S3 refused to delete {len(failures)} object(s) from {bucket}, first "
                        f"{first.get('Key')!r}: {first.get('Code')}: {first.get('Message')}"
                    )

            await self._call(run, f"delete {len(batch)} objects from {bucket}")

    async def stat(self, bucket: Bucket, key: str) -> int | None:
        def run() -> int | None:
            try:
                reply = self._client.head_object(Bucket=self.buckets[bucket], Key=key)
            except ClientError as exc:
                if _error_code(exc) in _MISSING_CODES:
                    return None
                raise
            return reply["ContentLength"]

        return await self._call(run, f"stat {bucket}/{key}")

    async def _call(self, run: Callable[[], _T], what: str) -> _T:
        try:
            return await asyncio.to_thread(run)
        except (BotoCoreError, ClientError) as exc:
            raise BlobError(f"S3 {what} at {self.endpoint_url} failed: {_describe(exc)}") from exc
