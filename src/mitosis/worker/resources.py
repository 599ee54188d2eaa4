"""Phase A of a task: download ``spec.resources`` into the task's resource directory (§6.3).

Each resource is resolved to a signed URL by the coordinator, then streamed to disk. Outcomes are
mapped to the 0.6.8 commit messages, with these fixes (behavior.md §11.3):

* S17: an unexpected answer when asking for a URL no longer stops the worker (which would re-queue
  the task onto the next worker, and stop that one too). 5xx and transport failures are retried
  until the phase deadline (then ``FetchResourceTimeout``); other statuses fail the task with
  ``ResourceForbidden``. A 401 is still a forced exit: it is about this worker, not the task.
* S21: a download no longer has a fixed 120 s budget whatever its size: it fails only when no byte
  arrives for 120 s (or at the phase deadline). Its failures are told apart: 404 →
  ``ResourceNotFound``, 5xx / connection loss → retried until the deadline, other statuses →
  ``ResourceForbidden``.

A ``local_path`` that is absolute, climbs out with ``..`` or names no file (``.``) is refused
(``ResourceForbidden``): the task spec comes from a user, the disk belongs to the worker. A file
that cannot be written locally (a directory in the way, a full disk) fails the task with
``FetchResourceError`` / ``ResourceForbidden`` instead of stopping the worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from mitosis.archives import safe_relative_path
from mitosis.wire.enums import TaskExecState, TaskResultMessage
from mitosis.wire.models import RemoteResourceDownload, RemoteResourceDownloadResp, WorkerTaskResp
from mitosis.worker.api import Backoff, CoordinatorApi, ForcedExit, StatusError, TransientError

log = logging.getLogger(__name__)

RESOURCE_PHASE_SECONDS = 30 * 60.0
STALL_SECONDS = 120.0
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ResourceFailure:
    """Why phase A failed: what to announce and which message to commit."""

    announce: TaskExecState
    msg: TaskResultMessage
    announce_ttl: int | None = 60


_TIMEOUT = ResourceFailure(TaskExecState.FetchResourceTimeout, TaskResultMessage.FetchResourceTimeout)
_NOT_FOUND = ResourceFailure(TaskExecState.FetchResourceNotFound, TaskResultMessage.ResourceNotFound)
_FORBIDDEN = ResourceFailure(TaskExecState.FetchResourceForbidden, TaskResultMessage.ResourceForbidden)
_UNEXPECTED = ResourceFailure(TaskExecState.FetchResourceError, TaskResultMessage.ResourceForbidden)


class _Retry(Exception):
    """A transient download failure."""


class _Fail(Exception):
    def __init__(self, failure: ResourceFailure) -> None:
        super().__init__(failure.msg.value)
        self.failure = failure


async def _resolve(
    api: CoordinatorApi, task: WorkerTaskResp, item: RemoteResourceDownload
) -> RemoteResourceDownloadResp:
    remote = item.remote_file
    if remote.Artifact is not None:
        return await api.artifact_url(remote.Artifact.uuid, remote.Artifact.content_type)
    assert remote.Attachment is not None
    # The attachment is looked up in the group of the task being executed.
    return await api.attachment_url(task.uuid, remote.Attachment.key)


async def _download(api: CoordinatorApi, url: str, dest: Path, deadline: float) -> None:
    """Stream ``url`` into ``dest``; raise _Retry for transient trouble, _Fail for the rest."""
    remaining = max(1.0, deadline - time.monotonic())
    timeout = httpx.Timeout(
        connect=min(30.0, remaining), read=min(STALL_SECONDS, remaining), write=30.0, pool=30.0
    )
    partial = dest.with_name(dest.name + ".part")
    try:
        async with api.stream_blob(url, timeout=timeout) as resp:
            if resp.status_code == 404:
                raise _Fail(_NOT_FOUND)
            if resp.status_code >= 500:
                raise _Retry(f"HTTP {resp.status_code}")
            if not resp.is_success:
                raise _Fail(_FORBIDDEN)
            with partial.open("wb") as out:
                async for chunk in resp.aiter_bytes(_CHUNK):
                    if time.monotonic() >= deadline:
                        raise _Fail(_TIMEOUT)
                    await asyncio.to_thread(out.write, chunk)
        os.replace(partial, dest)
    except (httpx.TransportError, httpx.TimeoutException) as exc:
        raise _Retry(f"{type(exc).__name__}: {exc}") from None
    finally:
        partial.unlink(missing_ok=True)


async def _fetch_one(
    api: CoordinatorApi,
    task: WorkerTaskResp,
    item: RemoteResourceDownload,
    resource_dir: Path,
    deadline: float,
    cap: float,
) -> None:
    try:
        rel = safe_relative_path(item.local_path)
    except ValueError as exc:
        log.warning("task %s: refusing resource local_path %r: %s", task.uuid, item.local_path, exc)
        raise _Fail(_FORBIDDEN) from None
    if not rel.parts:
        log.warning("task %s: refusing resource local_path %r: it names no file", task.uuid, item.local_path)
        raise _Fail(_FORBIDDEN)
    dest = resource_dir / rel
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        # e.g. an earlier resource of the task is a file where this one needs a directory.
        log.warning("task %s: resource %s: cannot create its directory: %s", task.uuid, item.local_path, exc)
        raise _Fail(_UNEXPECTED) from None
    backoff = Backoff(cap)
    while True:
        if time.monotonic() >= deadline:
            raise _Fail(_TIMEOUT)
        try:
            target = await _resolve(api, task, item)
            await _download(api, target.url, dest, deadline)
            return
        except ForcedExit:
            raise
        except StatusError as exc:
            log.warning("task %s: resource %s: %s", task.uuid, item.local_path, exc)
            if exc.status == 404:
                raise _Fail(_NOT_FOUND) from None
            if exc.status == 403:
                raise _Fail(_FORBIDDEN) from None
            raise _Fail(_UNEXPECTED) from None
        except (TransientError, _Retry) as exc:
            log.warning("task %s: resource %s: %s; retrying", task.uuid, item.local_path, exc)
        except OSError as exc:
            # The local side cannot take the file (a directory in the way, disk full, ...): the
            # task fails with a message; the worker goes on with its next task.
            log.warning("task %s: resource %s: cannot write it: %s", task.uuid, item.local_path, exc)
            raise _Fail(_UNEXPECTED) from None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Fail(_TIMEOUT)
        await asyncio.sleep(min(backoff.next_delay(), remaining))


async def fetch_resources(
    api: CoordinatorApi,
    task: WorkerTaskResp,
    resource_dir: Path,
    *,
    deadline: float,
    retry_cap: float,
) -> ResourceFailure | None:
    """Download every resource in order; the first failure ends the phase and is returned.

    ``deadline`` is on the monotonic clock. The caller races this against stop and cancellation.
    """
    try:
        for item in task.spec.resources:
            await _fetch_one(api, task, item, resource_dir, deadline, retry_cap)
    except _Fail as fail:
        return fail.failure
    return None
