"""The SDK's two faces: :class:`MitoClient` (blocking, ``httpx.Client``) and :class:`AsyncMitoClient`
(``httpx.AsyncClient``).

Each route is one thin method that sends a :class:`~mitosis.client.core.Call` built by the sans-IO
core, so both faces speak exactly the same wire format. On top of the routes: the credential-file
login flow of behavior.md §3.8 (:meth:`MitoClient.login_with_credentials`), waiting for a task,
and streaming transfers to and from presigned URLs (resumable downloads through ``<path>.part``).

Blob transfers go to presigned URLs (S3 or signed coordinator URLs) and never carry the bearer
token: an S3 server refuses a request signed twice.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Self, TypeVar
from uuid import UUID

import httpx

from mitosis.client import core, sweep
from mitosis.client import stream as live
from mitosis.client.credentials import CredentialStore
from mitosis.client.errors import (
    AuthExpiredError,
    ConnectionFailed,
    InvalidRequestError,
    MissingCredentials,
    MitoError,
    ServerError,
    SweepInterrupted,
    WaitTimeout,
)
from mitosis.wire import models as m
from mitosis.wire.enums import ArtifactContentType, Role, UserState

T = TypeVar("T")
Row = TypeVar("Row", m.TaskQueryInfo, m.AttachmentQueryInfo)

ProgressCallback = Callable[[int, int | None], None]
"""Called with (bytes done so far, total bytes or None when unknown)."""

AskCallback = Callable[[str], str]
"""Asked for a missing ``"user"`` or ``"password"``; returns the value."""

SweepProgress = Callable[[int, int], None]
"""Called after each chunk of a sweep with (tasks sent so far, tasks in the sweep)."""

SubmitResult = m.SubmitOk | m.SubmitErr

ChunkCallback = Callable[[list[SubmitResult]], None]
"""Called with the results of each accepted chunk of a sweep, in order."""

CHUNK = 1 << 20
QUERY_PAGE = 1000
"""Rows per request of ``query_all_*``: a coordinator of ours answers at most ``max_query_rows``
(10,000 by default) rows to one query, and refuses a query without ``limit`` that matches more.
One configured below this page size refuses the page and says its bound; the read then goes on in
pages of that size (:func:`_page_bound`)."""
_PAGE_BOUND = re.compile(r"page with limit at most (\d+)")
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


def _seconds(value: float | timedelta | None) -> float | None:
    return value.total_seconds() if isinstance(value, timedelta) else value


def _transport_error(base: str, exc: httpx.TransportError) -> ConnectionFailed:
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return ConnectionFailed(f"Fail to connect to {base}")
    return ConnectionFailed(f"Connection to {base} failed: {type(exc).__name__}: {exc}")


def _transfer_error(action: str, status: int, content: bytes) -> MitoError:
    """Blob stores answer errors in their own format (S3: XML); keep the status and a short text."""
    err = core.decode_error(status, content)
    first = err.msg.splitlines()[0][:200] if err.msg else ""
    err.msg = f"{action} failed with HTTP {status}" + (f": {first}" if first else "")
    return err


def _part_path(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def _resume_headers(part: Path) -> tuple[int, dict[str, str]]:
    """Bytes already on disk from an interrupted download, and the Range header to continue."""
    done = part.stat().st_size if part.exists() else 0
    return done, ({"Range": f"bytes={done}-"} if done else {})


def _total(resp: httpx.Response, done: int) -> int | None:
    length = resp.headers.get("Content-Length")
    return done + int(length) if length and length.isdigit() else None


def _page_bound(exc: InvalidRequestError, page: int) -> int:
    """The smaller page a coordinator asks for when it refused ``limit=page`` (its ``max_query_rows``
    is below it); any other refusal is the caller's to see, raised again."""
    found = _PAGE_BOUND.search(exc.msg)
    bound = int(found.group(1)) if found else 0
    if not 0 < bound < page:
        raise exc
    return bound


class _Merged(Generic[Row]):
    """The rows of a paged read so far: where the next page starts, and whether this was the last.

    0.6.8 pages by offset only. Rows that leave the result while it is read (a task that stops
    matching a state filter, an attachment deleted) move every later row up, and a row could slip
    from the start of the next page into the part already read. So each page after the first
    starts ``overlap`` rows before the end of the one before; when none of those rows was seen
    already, rows moved up by at least that much and the page is read again from further back
    (up to :data:`MAX_BACKOFFS` times, then the read goes on as it is). Rows are listed once, in
    the coordinator's order."""

    MAX_BACKOFFS = 3

    def __init__(self, offset: int | None) -> None:
        self.start = offset or 0
        self.offset = self.start
        self.rows: list[Row] = []
        self._seen: set[object] = set()
        self._backoffs = 0

    @staticmethod
    def ident(row: Row) -> object:
        return row.uuid if isinstance(row, m.TaskQueryInfo) else row.key

    @staticmethod
    def overlap(page: int) -> int:
        return page // 10 if page >= 10 else min(1, page - 1)

    def add(self, page_rows: list[Row], page: int) -> bool:
        idents = [self.ident(row) for row in page_rows]
        overlap = self.overlap(page)
        # Only a page after the first starts past ``start``. An empty one counts too: the rows
        # after the last page may have moved up past the end.
        moved_up = (
            overlap > 0
            and self.offset > self.start
            and not any(ident in self._seen for ident in idents[:overlap])
        )
        if moved_up and self._backoffs < self.MAX_BACKOFFS:
            # Read it again from further back; its rows are taken then, after rows already seen.
            self._backoffs += 1
            self.offset = max(self.start, self.offset - overlap * 2**self._backoffs)
            return False
        previous: object = None
        for ident, row in zip(idents, page_rows, strict=True):
            if ident not in self._seen:
                self._seen.add(ident)
                if previous is None or previous == self.ident(self.rows[-1]):
                    self.rows.append(row)
                else:
                    # A row that had slipped back: it goes after the row it follows in this page.
                    at = next(i for i, seen in enumerate(self.rows) if self.ident(seen) == previous)
                    self.rows.insert(at + 1, row)
            previous = ident
        self._backoffs = 0
        if len(page_rows) < page:
            return True
        self.offset += page - overlap
        return False


class _Base:
    """State shared by both faces: where the coordinator is, who we are, where tokens are kept."""

    def __init__(
        self,
        coordinator: str = "http://127.0.0.1:5000",
        token: str | None = None,
        *,
        username: str | None = None,
        credential_path: Path | None = None,
    ) -> None:
        self.base_url = core.base_url(coordinator)
        self.token = token
        self.username = username
        self.store = CredentialStore(credential_path)

    def _require_username(self) -> str:
        if not self.username:
            raise MissingCredentials("user")
        return self.username

    def _check(self, resp: httpx.Response) -> None:
        if not 200 <= resp.status_code < 300:
            raise core.decode_error(
                resp.status_code,
                resp.content,
                content_type=resp.headers.get("content-type"),
                url=str(resp.url.copy_with(query=None)),
                with_token="authorization" in resp.request.headers,
                username=self.username,
            )

    def _stored_entry(self, user: str | None) -> tuple[str, str] | None:
        entry = self.store.get(user)
        if entry is None or (user is not None and entry[0] != user):
            return None
        return entry

    def _credentials(
        self, user: str | None, password: str | None, ask: AskCallback | None, refused: str | None
    ) -> tuple[str, str]:
        """The user and password to log in with. ``refused`` names the user whose stored token the
        coordinator just refused: the default user, and the one to blame when no password comes."""
        user = user or refused
        try:
            if not user:
                if ask is None:
                    raise MissingCredentials("user")
                user = ask("user")
            if password is None:
                if ask is None:
                    raise MissingCredentials("password")
                password = ask("password")
        except MissingCredentials:
            if refused is None or user != refused:
                raise
            self.token = None
            raise AuthExpiredError(
                f"the stored token of {refused} is no longer accepted (expired, or ended by a newer "
                "login): log in again",
                username=refused,
            ) from None
        return user, password


class MitoClient(_Base):
    """Blocking client of the coordinator's HTTP API (behavior.md §4).

    ``with MitoClient("http://coord:5000") as c: c.login_with_credentials("alice", "pw")``
    """

    def __init__(
        self,
        coordinator: str = "http://127.0.0.1:5000",
        token: str | None = None,
        *,
        username: str | None = None,
        credential_path: Path | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(coordinator, token, username=username, credential_path=credential_path)
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _send(self, call: core.Call[T]) -> T:
        try:
            resp = self._http.request(
                call.method,
                call.path,
                params=tuple(call.params),
                content=call.content(),
                headers=call.headers(self.token),
            )
        except httpx.TransportError as exc:
            raise _transport_error(self.base_url, exc) from exc
        self._check(resp)
        return call.decode(resp.content)

    # ------------------------------------------------------------------------------------ helpers

    def login_with_credentials(
        self,
        user: str | None = None,
        password: str | None = None,
        retain: bool = False,
        ask: AskCallback | None = None,
    ) -> str:
        """The §3.8 flow: reuse the stored token if ``/auth`` accepts it, else log in and store it.

        Returns the username. A 5xx or an unreachable coordinator is an error; any other refusal
        of the stored token falls back to a login as the stored token's user (unless ``user`` says
        otherwise), asking ``ask`` for what is missing. When the password is missing and cannot be
        asked for, a refused stored token raises :class:`AuthExpiredError` naming its user.
        """
        entry = self._stored_entry(user)
        if entry is not None:
            self.token = entry[1]
            try:
                who = self.auth()
            except (ServerError, ConnectionFailed):
                raise
            except MitoError:
                who = None
            if who == entry[0]:
                self.username = who
                return who
        name, pw = self._credentials(user, password, ask, entry[0] if entry else None)
        token = self.login(name, pw, retain)
        self.store.put(name, token)
        return name

    def wait_task(
        self, uuid: UUID | str, timeout: float | timedelta | None = None, poll: float = 1.0
    ) -> m.TaskQueryResp:
        """Poll ``GET /tasks/{uuid}`` until the task is Finished or Cancelled with its result recorded.

        A task is Finished as soon as its process exits, but its result (exit status, message) and
        artifacts arrive with the worker's commit a moment later; this waits for the commit."""
        limit = _seconds(timeout)
        deadline = None if limit is None else time.monotonic() + limit
        while True:
            resp = self.get_task(uuid)
            if live.committed(resp):
                return resp
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(
                    f"task {resp.info.uuid} has not ended after {limit:g} s ({live.pending_state(resp)})"
                )
            time.sleep(poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic())))

    def events(
        self, *, last_event_id: int | None = None, timeout: float | None = None, **filters: Any
    ) -> live.EventStream:
        """``GET /events`` (filters: group, task, labels, state, kind), reconnecting by itself."""
        return live.EventStream(self, live.event_params(**filters), last_event_id, timeout)

    def logs(
        self,
        uuid: UUID | str,
        *,
        stream: str = "both",
        follow: bool = False,
        offset: int = 0,
        on_notice: live.Notice | None = None,
    ) -> live.LogStream:
        """A task's live log as ``(stream, bytes)`` chunks; the std-log artifact once it ended."""
        return live.LogStream(self, uuid, stream=stream, follow=follow, offset=offset, on_notice=on_notice)

    def download_to(self, url: str, path: Path, progress_cb: ProgressCallback | None = None) -> Path:
        """Stream ``url`` into ``path`` through ``<path>.part``, continuing a previous partial run."""
        path.parent.mkdir(parents=True, exist_ok=True)
        part = _part_path(path)
        done, headers = _resume_headers(part)
        try:
            with self._http.stream("GET", url, headers=headers) as resp:
                if resp.status_code == 416 and done:
                    part.unlink()
                    return self.download_to(url, path, progress_cb)
                if not 200 <= resp.status_code < 300:
                    resp.read()
                    raise _transfer_error("download", resp.status_code, resp.content)
                if resp.status_code != 206:
                    done = 0  # the server ignored the Range header: start over
                total = _total(resp, done)
                with part.open("ab" if done else "wb") as fh:
                    if progress_cb:
                        progress_cb(done, total)
                    for chunk in resp.iter_bytes(CHUNK):
                        fh.write(chunk)
                        done += len(chunk)
                        if progress_cb:
                            progress_cb(done, total)
        except httpx.TransportError as exc:
            raise _transport_error(str(httpx.URL(url).copy_with(path="/", query=None)), exc) from exc
        part.replace(path)
        return path

    def upload_file(self, url: str, path: Path, progress_cb: ProgressCallback | None = None) -> None:
        """PUT ``path`` to a presigned URL with its exact Content-Length, streamed from disk."""
        size = path.stat().st_size

        def chunks() -> Iterator[bytes]:
            sent = 0
            with path.open("rb") as fh:
                while chunk := fh.read(CHUNK):
                    sent += len(chunk)
                    yield chunk
                    if progress_cb:
                        progress_cb(sent, size)

        try:
            resp = self._http.put(url, content=chunks(), headers={"Content-Length": str(size)})
        except httpx.TransportError as exc:
            raise _transport_error(str(httpx.URL(url).copy_with(path="/", query=None)), exc) from exc
        if not 200 <= resp.status_code < 300:
            raise _transfer_error("upload", resp.status_code, resp.content)

    def upload_attachment_file(
        self, group: str, key: str, path: Path, progress_cb: ProgressCallback | None = None
    ) -> m.UploadAttachmentResp:
        resp = self.upload_attachment_url(group, key, path.stat().st_size)
        self.upload_file(resp.url, path, progress_cb)
        return resp

    def upload_artifact_file(
        self,
        uuid: UUID | str,
        content_type: ArtifactContentType | str,
        path: Path,
        progress_cb: ProgressCallback | None = None,
    ) -> m.UploadArtifactResp:
        resp = self.upload_artifact_url(uuid, content_type, path.stat().st_size)
        self.upload_file(resp.url, path, progress_cb)
        return resp

    # ------------------------------------------------------------------ public and session (1-6)

    def health(self) -> m.HealthResp:
        return self._send(core.health())

    def login(self, username: str, password: str, retain: bool = False) -> str:
        """``POST /login``; the new token becomes this client's token and is returned."""
        resp = self._send(core.login(username, password, retain))
        self.token, self.username = resp.token, username
        return resp.token

    def auth(self) -> str:
        """``GET /auth``: the username the current token belongs to."""
        return self._send(core.auth())

    def redis(self) -> m.RedisConnectionInfo:
        return self._send(core.redis())

    def change_password(self, old_password: str, new_password: str, username: str | None = None) -> str:
        """Change one's own password; every older token dies, the returned new one is adopted."""
        name = username or self._require_username()
        resp = self._send(core.change_password(name, old_password, new_password))
        self.token = resp.token
        return resp.token

    def my_groups(self) -> m.GroupsQueryResp:
        return self._send(core.my_groups())

    # -------------------------------------------------------------------------------- groups (7-11)

    def create_group(self, group: str) -> None:
        return self._send(core.create_group(group))

    def get_group(self, group: str) -> m.GroupQueryInfo:
        return self._send(core.get_group(group))

    def update_group_users(self, group: str, relations: Mapping[str, Role | str]) -> None:
        return self._send(core.update_group_users(group, relations))

    def remove_group_users(self, group: str, users: Iterable[str], *, use_body: bool = False) -> None:
        return self._send(core.remove_group_users(group, users, use_body=use_body))

    # -------------------------------------------------------------------------- attachments (12-20)

    def upload_attachment_url(self, group: str, key: str, content_length: int) -> m.UploadAttachmentResp:
        return self._send(core.upload_attachment(group, key, content_length))

    def get_attachment(self, group: str, key: str) -> m.AttachmentMetadata:
        return self._send(core.get_attachment(group, key))

    def delete_attachment(self, group: str, key: str) -> None:
        return self._send(core.delete_attachment(group, key))

    def query_attachments(
        self,
        group: str,
        key: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
        count: bool = False,
    ) -> m.AttachmentsQueryResp:
        return self._send(core.query_attachments(group, key, limit, offset, count))

    def query_all_attachments(
        self, group: str, key: str | None = None, offset: int | None = None, page: int = QUERY_PAGE
    ) -> m.AttachmentsQueryResp:
        """Every attachment of ``group`` whose key contains ``key``, from ``offset`` on, read in
        pages of ``page`` rows (in key order), overlapping as :meth:`query_all_tasks`' do."""
        merged: _Merged[m.AttachmentQueryInfo] = _Merged(offset)
        while True:
            try:
                resp = self.query_attachments(group, key, page, merged.offset)
            except InvalidRequestError as exc:
                page = _page_bound(exc, page)
                continue
            if merged.add(resp.attachments, page):
                return m.AttachmentsQueryResp(
                    count=len(merged.rows), attachments=merged.rows, group_name=resp.group_name
                )

    def attachment_download_url(self, group: str, key: str) -> m.RemoteResourceDownloadResp:
        return self._send(core.attachment_download_url(group, key))

    def download_attachments_by_filter(
        self, group: str, key: str | None = None, limit: int | None = None, offset: int | None = None
    ) -> m.AttachmentsDownloadListResp:
        return self._send(core.download_attachments_by_filter(group, key, limit, offset))

    def download_attachments_by_keys(self, group: str, keys: Sequence[str]) -> m.AttachmentsDownloadListResp:
        return self._send(core.download_attachments_by_keys(group, keys))

    def delete_attachments_by_filter(
        self, group: str, key: str | None = None, limit: int | None = None, offset: int | None = None
    ) -> m.AttachmentsDeleteByFilterResp:
        return self._send(core.delete_attachments_by_filter(group, key, limit, offset))

    def delete_attachments_by_keys(self, group: str, keys: Sequence[str]) -> m.AttachmentsDeleteByKeysResp:
        return self._send(core.delete_attachments_by_keys(group, keys))

    # -------------------------------------------------------------------------------- tasks (21-29)

    def submit_task(self, req: m.SubmitTaskReq) -> m.SubmitTaskResp:
        return self._send(core.submit_task(req))

    def submit_tasks(self, reqs: Sequence[m.SubmitTaskReq]) -> m.TasksSubmitResp:
        return self._send(core.submit_tasks(reqs))

    def submit_sweep(
        self,
        template: m.SubmitTaskReq,
        matrix: sweep.Matrix,
        chunk: int = sweep.DEFAULT_CHUNK,
        progress: SweepProgress | None = None,
        max_tasks: int = sweep.DEFAULT_MAX_TASKS,
        on_chunk: ChunkCallback | None = None,
    ) -> list[SubmitResult]:
        """Submit ``template`` once per combination of ``matrix`` (see :mod:`mitosis.client.sweep`)
        through ``POST /tasks/submit``, ``chunk`` tasks per request.

        Returns one result per task in :func:`~mitosis.client.sweep.combinations` order: a task the
        coordinator refused is a ``SubmitErr``, the others are submitted. Raises
        :class:`~mitosis.client.errors.SweepError` for an invalid sweep (nothing sent) and
        :class:`~mitosis.client.errors.SweepInterrupted` when a request fails after earlier chunks
        were accepted. ``on_chunk`` gets each chunk's results as soon as they arrive, so a caller
        interrupted part-way (Ctrl-C) still knows which tasks exist.
        """
        total = sweep.check_matrix(template, matrix, max_tasks)
        results: list[SubmitResult] = []
        for batch in sweep.chunks(sweep.instances(template, matrix), chunk):
            try:
                got = self.submit_tasks(batch).results
            except MitoError as exc:
                if not results:
                    raise
                raise SweepInterrupted(exc, results, total) from exc
            results.extend(got)
            if on_chunk:
                on_chunk(got)
            if progress:
                progress(len(results), total)
        return results

    def get_task(self, uuid: UUID | str) -> m.TaskQueryResp:
        return self._send(core.get_task(uuid))

    def change_task(self, uuid: UUID | str, req: m.ChangeTaskReq) -> None:
        return self._send(core.change_task(uuid, req))

    def cancel_task(self, uuid: UUID | str) -> None:
        return self._send(core.cancel_task(uuid))

    def update_task_labels(self, uuid: UUID | str, labels: Iterable[str]) -> None:
        return self._send(core.update_task_labels(uuid, labels))

    def query_tasks(self, req: m.TasksQueryReq | None = None) -> m.TasksQueryResp:
        return self._send(core.query_tasks(req or m.TasksQueryReq()))

    def query_all_tasks(self, req: m.TasksQueryReq | None = None, page: int = QUERY_PAGE) -> m.TasksQueryResp:
        """Every task matching ``req`` from its ``offset`` on (its ``limit`` is ignored), read in
        pages of ``page`` rows, newest first. Pages overlap, so a task that matches throughout
        the read is listed, and listed once, even when others stop matching meanwhile
        (:class:`_Merged`)."""
        base = req or m.TasksQueryReq()
        merged: _Merged[m.TaskQueryInfo] = _Merged(base.offset)
        while True:
            try:
                resp = self.query_tasks(base.model_copy(update={"limit": page, "offset": merged.offset}))
            except InvalidRequestError as exc:
                page = _page_bound(exc, page)
                continue
            if merged.add(resp.tasks, page):
                return m.TasksQueryResp(count=len(merged.rows), tasks=merged.rows, group_name=resp.group_name)

    def cancel_tasks(self, req: m.TasksCancelByFilterReq | None = None) -> m.TasksCancelByFilterResp:
        return self._send(core.cancel_tasks(req or m.TasksCancelByFilterReq()))

    def cancel_task_list(self, uuids: Iterable[UUID | str]) -> m.TasksCancelByUuidsResp:
        return self._send(core.cancel_task_list(uuids))

    # ---------------------------------------------------------------------------- artifacts (30-36)

    def upload_artifact_url(
        self, uuid: UUID | str, content_type: ArtifactContentType | str, content_length: int
    ) -> m.UploadArtifactResp:
        return self._send(core.upload_artifact(uuid, content_type, content_length))

    def artifact_download_url(
        self, uuid: UUID | str, content_type: ArtifactContentType | str
    ) -> m.RemoteResourceDownloadResp:
        return self._send(core.artifact_download_url(uuid, content_type))

    def delete_artifact(self, uuid: UUID | str, content_type: ArtifactContentType | str) -> None:
        return self._send(core.delete_artifact(uuid, content_type))

    def download_artifacts_by_filter(
        self, req: m.ArtifactsDownloadByFilterReq
    ) -> m.ArtifactsDownloadListResp:
        return self._send(core.download_artifacts_by_filter(req))

    def download_artifacts_by_uuids(
        self, uuids: Iterable[UUID | str], content_type: ArtifactContentType | str
    ) -> m.ArtifactsDownloadListResp:
        return self._send(core.download_artifacts_by_uuids(uuids, content_type))

    def delete_artifacts_by_filter(self, req: m.ArtifactsDeleteByFilterReq) -> m.ArtifactsDeleteByFilterResp:
        return self._send(core.delete_artifacts_by_filter(req))

    def delete_artifacts_by_uuids(
        self, uuids: Iterable[UUID | str], content_type: ArtifactContentType | str
    ) -> m.ArtifactsDeleteByUuidsResp:
        return self._send(core.delete_artifacts_by_uuids(uuids, content_type))

    # ------------------------------------------------------------------------------ workers (37-47)

    def register_worker(self, req: m.RegisterWorkerReq) -> m.RegisterWorkerResp:
        return self._send(core.register_worker(req))

    def get_worker(self, uuid: UUID | str) -> m.WorkerQueryResp:
        return self._send(core.get_worker(uuid))

    def cancel_worker(self, uuid: UUID | str, force: bool = False) -> None:
        return self._send(core.cancel_worker(uuid, force))

    def replace_worker_tags(self, uuid: UUID | str, tags: Iterable[str]) -> None:
        return self._send(core.replace_worker_tags(uuid, tags))

    def replace_worker_labels(self, uuid: UUID | str, labels: Iterable[str]) -> None:
        return self._send(core.replace_worker_labels(uuid, labels))

    def update_worker_groups(self, uuid: UUID | str, relations: Mapping[str, Role | str]) -> None:
        return self._send(core.update_worker_groups(uuid, relations))

    def remove_worker_groups(
        self, uuid: UUID | str, groups: Iterable[str], *, use_body: bool = False
    ) -> None:
        return self._send(core.remove_worker_groups(uuid, groups, use_body=use_body))

    def query_workers(self, req: m.WorkersQueryReq | None = None) -> m.WorkersQueryResp:
        return self._send(core.query_workers(req or m.WorkersQueryReq()))

    def shutdown_workers(self, req: m.WorkersShutdownByFilterReq) -> m.WorkersShutdownByFilterResp:
        return self._send(core.shutdown_workers(req))

    def shutdown_worker_list(
        self, uuids: Iterable[UUID | str], force: bool = False
    ) -> m.WorkersShutdownByUuidsResp:
        return self._send(core.shutdown_worker_list(uuids, force))

    # ----------------------------------------------------------- worker protocol (48-54), worker token

    def unregister_worker(self) -> None:
        return self._send(core.unregister_worker())

    def heartbeat(self) -> None:
        return self._send(core.heartbeat())

    def fetch_task(self) -> m.WorkerTaskResp | None:
        return self._send(core.fetch_task())

    def report_task(self, req: m.ReportTaskReq) -> m.ReportTaskResp:
        return self._send(core.report_task(req))

    def worker_get_task(self, uuid: UUID | str) -> m.TaskQueryResp:
        return self._send(core.worker_get_task(uuid))

    def worker_artifact_url(
        self, uuid: UUID | str, content_type: ArtifactContentType | str
    ) -> m.RemoteResourceDownloadResp:
        return self._send(core.worker_artifact_url(uuid, content_type))

    def worker_attachment_url(self, task_uuid: UUID | str, key: str) -> m.RemoteResourceDownloadResp:
        return self._send(core.worker_attachment_url(task_uuid, key))

    # -------------------------------------------------------------------------------- admin (55-64)

    def create_user(self, username: str, password: str, admin: bool = False) -> None:
        return self._send(core.create_user(username, password, admin))

    def delete_user(self, username: str) -> m.UserStateResp:
        return self._send(core.delete_user(username))

    def change_user_password(self, username: str, new_password: str) -> None:
        return self._send(core.change_user_password(username, new_password))

    def user_group_quota(self, username: str, group_quota: str) -> m.UserGroupQuotaResp:
        return self._send(core.user_group_quota(username, group_quota))

    def user_state(self, username: str, state: UserState | str) -> m.UserStateResp:
        return self._send(core.user_state(username, state))

    def group_storage_quota(self, group: str, storage_quota: str) -> m.GroupStorageQuotaResp:
        return self._send(core.group_storage_quota(group, storage_quota))

    def get_group_retention(self, group: str) -> m.GroupRetentionResp:
        """How long the group's archived tasks are kept (admin)."""
        return self._send(core.get_group_retention(group))

    def group_retention(self, group: str, retention_days: int | None) -> m.GroupRetentionResp:
        """Keep the group's archived tasks ``retention_days`` days (0: forever; None: the default)."""
        return self._send(core.group_retention(group, retention_days))

    def admin_cancel_worker(self, uuid: UUID | str, force: bool = False) -> None:
        return self._send(core.admin_cancel_worker(uuid, force))

    def admin_delete_attachment(self, group: str, key: str) -> None:
        return self._send(core.admin_delete_attachment(group, key))

    def admin_delete_artifact(self, uuid: UUID | str, content_type: ArtifactContentType | str) -> None:
        return self._send(core.admin_delete_artifact(uuid, content_type))

    def shutdown(self, secret: str) -> None:
        return self._send(core.shutdown(secret))


class AsyncMitoClient(_Base):
    """The asyncio face of :class:`MitoClient`: the same methods, awaited."""

    def __init__(
        self,
        coordinator: str = "http://127.0.0.1:5000",
        token: str | None = None,
        *,
        username: str | None = None,
        credential_path: Path | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(coordinator, token, username=username, credential_path=credential_path)
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _send(self, call: core.Call[T]) -> T:
        try:
            resp = await self._http.request(
                call.method,
                call.path,
                params=tuple(call.params),
                content=call.content(),
                headers=call.headers(self.token),
            )
        except httpx.TransportError as exc:
            raise _transport_error(self.base_url, exc) from exc
        self._check(resp)
        return call.decode(resp.content)

    # ------------------------------------------------------------------------------------ helpers

    async def login_with_credentials(
        self,
        user: str | None = None,
        password: str | None = None,
        retain: bool = False,
        ask: AskCallback | None = None,
    ) -> str:
        """See :meth:`MitoClient.login_with_credentials`."""
        entry = self._stored_entry(user)
        if entry is not None:
            self.token = entry[1]
            try:
                who = await self.auth()
            except (ServerError, ConnectionFailed):
                raise
            except MitoError:
                who = None
            if who == entry[0]:
                self.username = who
                return who
        name, pw = self._credentials(user, password, ask, entry[0] if entry else None)
        token = await self.login(name, pw, retain)
        self.store.put(name, token)
        return name

    async def wait_task(
        self, uuid: UUID | str, timeout: float | timedelta | None = None, poll: float = 1.0
    ) -> m.TaskQueryResp:
        """See :meth:`MitoClient.wait_task`."""
        limit = _seconds(timeout)
        loop = asyncio.get_running_loop()
        deadline = None if limit is None else loop.time() + limit
        while True:
            resp = await self.get_task(uuid)
            if live.committed(resp):
                return resp
            if deadline is not None and loop.time() >= deadline:
                raise WaitTimeout(
                    f"task {resp.info.uuid} has not ended after {limit:g} s ({live.pending_state(resp)})"
                )
            await asyncio.sleep(poll if deadline is None else max(0.0, min(poll, deadline - loop.time())))

    def events(
        self, *, last_event_id: int | None = None, timeout: float | None = None, **filters: Any
    ) -> live.AsyncEventStream:
        """See :meth:`MitoClient.events` (``async with`` / ``async for``)."""
        return live.AsyncEventStream(self, live.event_params(**filters), last_event_id, timeout)

    def logs(
        self,
        uuid: UUID | str,
        *,
        stream: str = "both",
        follow: bool = False,
        offset: int = 0,
        on_notice: live.Notice | None = None,
    ) -> live.AsyncLogStream:
        """See :meth:`MitoClient.logs` (``async for stream, data in ...``)."""
        return live.AsyncLogStream(
            self, uuid, stream=stream, follow=follow, offset=offset, on_notice=on_notice
        )

    async def download_to(self, url: str, path: Path, progress_cb: ProgressCallback | None = None) -> Path:
        """See :meth:`MitoClient.download_to`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        part = _part_path(path)
        done, headers = _resume_headers(part)
        try:
            async with self._http.stream("GET", url, headers=headers) as resp:
                if resp.status_code == 416 and done:
                    part.unlink()
                    return await self.download_to(url, path, progress_cb)
                if not 200 <= resp.status_code < 300:
                    await resp.aread()
                    raise _transfer_error("download", resp.status_code, resp.content)
                if resp.status_code != 206:
                    done = 0
                total = _total(resp, done)
                with part.open("ab" if done else "wb") as fh:
                    if progress_cb:
                        progress_cb(done, total)
                    async for chunk in resp.aiter_bytes(CHUNK):
                        fh.write(chunk)
                        done += len(chunk)
                        if progress_cb:
                            progress_cb(done, total)
        except httpx.TransportError as exc:
            raise _transport_error(str(httpx.URL(url).copy_with(path="/", query=None)), exc) from exc
        part.replace(path)
        return path

    async def upload_file(self, url: str, path: Path, progress_cb: ProgressCallback | None = None) -> None:
        """See :meth:`MitoClient.upload_file`."""
        size = path.stat().st_size

        async def chunks() -> AsyncIterator[bytes]:
            sent = 0
            with path.open("rb") as fh:
                while chunk := fh.read(CHUNK):
                    sent += len(chunk)
                    yield chunk
                    if progress_cb:
                        progress_cb(sent, size)

        try:
            resp = await self._http.put(url, content=chunks(), headers={"Content-Length": str(size)})
        except httpx.TransportError as exc:
            raise _transport_error(str(httpx.URL(url).copy_with(path="/", query=None)), exc) from exc
        if not 200 <= resp.status_code < 300:
            raise _transfer_error("upload", resp.status_code, resp.content)

    async def upload_attachment_file(
        self, group: str, key: str, path: Path, progress_cb: ProgressCallback | None = None
    ) -> m.UploadAttachmentResp:
        resp = await self.upload_attachment_url(group, key, path.stat().st_size)
        await self.upload_file(resp.url, path, progress_cb)
        return resp

    async def upload_artifact_file(
        self,
        uuid: UUID | str,
        content_type: ArtifactContentType | str,
        path: Path,
        progress_cb: ProgressCallback | None = None,
    ) -> m.UploadArtifactResp:
        resp = await self.upload_artifact_url(uuid, content_type, path.stat().st_size)
        await self.upload_file(resp.url, path, progress_cb)
        return resp

    # ------------------------------------------------------------------ public and session (1-6)

    async def health(self) -> m.HealthResp:
        return await self._send(core.health())

    async def login(self, username: str, password: str, retain: bool = False) -> str:
        """``POST /login``; the new token becomes this client's token and is returned."""
        resp = await self._send(core.login(username, password, retain))
        self.token, self.username = resp.token, username
        return resp.token

    async def auth(self) -> str:
        """``GET /auth``: the username the current token belongs to."""
        return await self._send(core.auth())

    async def redis(self) -> m.RedisConnectionInfo:
        return await self._send(core.redis())

    async def change_password(self, old_password: str, new_password: str, username: str | None = None) -> str:
        """Change one's own password; every older token dies, the returned new one is adopted."""
        name = username or self._require_username()
        resp = await self._send(core.change_password(name, old_password, new_password))
        self.token = resp.token
        return resp.token

    async def my_groups(self) -> m.GroupsQueryResp:
        return await self._send(core.my_groups())

    # -------------------------------------------------------------------------------- groups (7-11)

    async def create_group(self, group: str) -> None:
        return await self._send(core.create_group(group))

    async def get_group(self, group: str) -> m.GroupQueryInfo:
        return await self._send(core.get_group(group))

    async def update_group_users(self, group: str, relations: Mapping[str, Role | str]) -> None:
        return await self._send(core.update_group_users(group, relations))

    async def remove_group_users(self, group: str, users: Iterable[str], *, use_body: bool = False) -> None:
        return await self._send(core.remove_group_users(group, users, use_body=use_body))

    # -------------------------------------------------------------------------- attachments (12-20)

    async def upload_attachment_url(
        self, group: str, key: str, content_length: int
    ) -> m.UploadAttachmentResp:
        return await self._send(core.upload_attachment(group, key, content_length))

    async def get_attachment(self, group: str, key: str) -> m.AttachmentMetadata:
        return await self._send(core.get_attachment(group, key))

    async def delete_attachment(self, group: str, key: str) -> None:
        return await self._send(core.delete_attachment(group, key))

    async def query_attachments(
        self,
        group: str,
        key: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
        count: bool = False,
    ) -> m.AttachmentsQueryResp:
        return await self._send(core.query_attachments(group, key, limit, offset, count))

    async def query_all_attachments(
        self, group: str, key: str | None = None, offset: int | None = None, page: int = QUERY_PAGE
    ) -> m.AttachmentsQueryResp:
        """As :meth:`MitoClient.query_all_attachments`."""
        merged: _Merged[m.AttachmentQueryInfo] = _Merged(offset)
        while True:
            try:
                resp = await self.query_attachments(group, key, page, merged.offset)
            except InvalidRequestError as exc:
                page = _page_bound(exc, page)
                continue
            if merged.add(resp.attachments, page):
                return m.AttachmentsQueryResp(
                    count=len(merged.rows), attachments=merged.rows, group_name=resp.group_name
                )

    async def attachment_download_url(self, group: str, key: str) -> m.RemoteResourceDownloadResp:
        return await self._send(core.attachment_download_url(group, key))

    async def download_attachments_by_filter(
        self, group: str, key: str | None = None, limit: int | None = None, offset: int | None = None
    ) -> m.AttachmentsDownloadListResp:
        return await self._send(core.download_attachments_by_filter(group, key, limit, offset))

    async def download_attachments_by_keys(
        self, group: str, keys: Sequence[str]
    ) -> m.AttachmentsDownloadListResp:
        return await self._send(core.download_attachments_by_keys(group, keys))

    async def delete_attachments_by_filter(
        self, group: str, key: str | None = None, limit: int | None = None, offset: int | None = None
    ) -> m.AttachmentsDeleteByFilterResp:
        return await self._send(core.delete_attachments_by_filter(group, key, limit, offset))

    async def delete_attachments_by_keys(
        self, group: str, keys: Sequence[str]
    ) -> m.AttachmentsDeleteByKeysResp:
        return await self._send(core.delete_attachments_by_keys(group, keys))

    # -------------------------------------------------------------------------------- tasks (21-29)

    async def submit_task(self, req: m.SubmitTaskReq) -> m.SubmitTaskResp:
        return await self._send(core.submit_task(req))

    async def submit_tasks(self, reqs: Sequence[m.SubmitTaskReq]) -> m.TasksSubmitResp:
        return await self._send(core.submit_tasks(reqs))

    async def submit_sweep(
        self,
        template: m.SubmitTaskReq,
        matrix: sweep.Matrix,
        chunk: int = sweep.DEFAULT_CHUNK,
        progress: SweepProgress | None = None,
        max_tasks: int = sweep.DEFAULT_MAX_TASKS,
        on_chunk: ChunkCallback | None = None,
    ) -> list[SubmitResult]:
        """See :meth:`MitoClient.submit_sweep`."""
        total = sweep.check_matrix(template, matrix, max_tasks)
        results: list[SubmitResult] = []
        for batch in sweep.chunks(sweep.instances(template, matrix), chunk):
            try:
                got = (await self.submit_tasks(batch)).results
            except MitoError as exc:
                if not results:
                    raise
                raise SweepInterrupted(exc, results, total) from exc
            results.extend(got)
            if on_chunk:
                on_chunk(got)
            if progress:
                progress(len(results), total)
        return results

    async def get_task(self, uuid: UUID | str) -> m.TaskQueryResp:
        return await self._send(core.get_task(uuid))

    async def change_task(self, uuid: UUID | str, req: m.ChangeTaskReq) -> None:
        return await self._send(core.change_task(uuid, req))

    async def cancel_task(self, uuid: UUID | str) -> None:
        return await self._send(core.cancel_task(uuid))

    async def update_task_labels(self, uuid: UUID | str, labels: Iterable[str]) -> None:
        return await self._send(core.update_task_labels(uuid, labels))

    async def query_tasks(self, req: m.TasksQueryReq | None = None) -> m.TasksQueryResp:
        return await self._send(core.query_tasks(req or m.TasksQueryReq()))

    async def query_all_tasks(
        self, req: m.TasksQueryReq | None = None, page: int = QUERY_PAGE
    ) -> m.TasksQueryResp:
        """As :meth:`MitoClient.query_all_tasks`."""
        base = req or m.TasksQueryReq()
        merged: _Merged[m.TaskQueryInfo] = _Merged(base.offset)
        while True:
            try:
                resp = await self.query_tasks(
                    base.model_copy(update={"limit": page, "offset": merged.offset})
                )
            except InvalidRequestError as exc:
                page = _page_bound(exc, page)
                continue
            if merged.add(resp.tasks, page):
                return m.TasksQueryResp(count=len(merged.rows), tasks=merged.rows, group_name=resp.group_name)

    async def cancel_tasks(self, req: m.TasksCancelByFilterReq | None = None) -> m.TasksCancelByFilterResp:
        return await self._send(core.cancel_tasks(req or m.TasksCancelByFilterReq()))

    async def cancel_task_list(self, uuids: Iterable[UUID | str]) -> m.TasksCancelByUuidsResp:
        return await self._send(core.cancel_task_list(uuids))

    # ---------------------------------------------------------------------------- artifacts (30-36)

    async def upload_artifact_url(
        self, uuid: UUID | str, content_type: ArtifactContentType | str, content_length: int
    ) -> m.UploadArtifactResp:
        return await self._send(core.upload_artifact(uuid, content_type, content_length))

    async def artifact_download_url(
        self, uuid: UUID | str, content_type: ArtifactContentType | str
    ) -> m.RemoteResourceDownloadResp:
        return await self._send(core.artifact_download_url(uuid, content_type))

    async def delete_artifact(self, uuid: UUID | str, content_type: ArtifactContentType | str) -> None:
        return await self._send(core.delete_artifact(uuid, content_type))

    async def download_artifacts_by_filter(
        self, req: m.ArtifactsDownloadByFilterReq
    ) -> m.ArtifactsDownloadListResp:
        return await self._send(core.download_artifacts_by_filter(req))

    async def download_artifacts_by_uuids(
        self, uuids: Iterable[UUID | str], content_type: ArtifactContentType | str
    ) -> m.ArtifactsDownloadListResp:
        return await self._send(core.download_artifacts_by_uuids(uuids, content_type))

    async def delete_artifacts_by_filter(
        self, req: m.ArtifactsDeleteByFilterReq
    ) -> m.ArtifactsDeleteByFilterResp:
        return await self._send(core.delete_artifacts_by_filter(req))

    async def delete_artifacts_by_uuids(
        self, uuids: Iterable[UUID | str], content_type: ArtifactContentType | str
    ) -> m.ArtifactsDeleteByUuidsResp:
        return await self._send(core.delete_artifacts_by_uuids(uuids, content_type))

    # ------------------------------------------------------------------------------ workers (37-47)

    async def register_worker(self, req: m.RegisterWorkerReq) -> m.RegisterWorkerResp:
        return await self._send(core.register_worker(req))

    async def get_worker(self, uuid: UUID | str) -> m.WorkerQueryResp:
        return await self._send(core.get_worker(uuid))

    async def cancel_worker(self, uuid: UUID | str, force: bool = False) -> None:
        return await self._send(core.cancel_worker(uuid, force))

    async def replace_worker_tags(self, uuid: UUID | str, tags: Iterable[str]) -> None:
        return await self._send(core.replace_worker_tags(uuid, tags))

    async def replace_worker_labels(self, uuid: UUID | str, labels: Iterable[str]) -> None:
        return await self._send(core.replace_worker_labels(uuid, labels))

    async def update_worker_groups(self, uuid: UUID | str, relations: Mapping[str, Role | str]) -> None:
        return await self._send(core.update_worker_groups(uuid, relations))

    async def remove_worker_groups(
        self, uuid: UUID | str, groups: Iterable[str], *, use_body: bool = False
    ) -> None:
        return await self._send(core.remove_worker_groups(uuid, groups, use_body=use_body))

    async def query_workers(self, req: m.WorkersQueryReq | None = None) -> m.WorkersQueryResp:
        return await self._send(core.query_workers(req or m.WorkersQueryReq()))

    async def shutdown_workers(self, req: m.WorkersShutdownByFilterReq) -> m.WorkersShutdownByFilterResp:
        return await self._send(core.shutdown_workers(req))

    async def shutdown_worker_list(
        self, uuids: Iterable[UUID | str], force: bool = False
    ) -> m.WorkersShutdownByUuidsResp:
        return await self._send(core.shutdown_worker_list(uuids, force))

    # ----------------------------------------------------------- worker protocol (48-54), worker token

    async def unregister_worker(self) -> None:
        return await self._send(core.unregister_worker())

    async def heartbeat(self) -> None:
        return await self._send(core.heartbeat())

    async def fetch_task(self) -> m.WorkerTaskResp | None:
        return await self._send(core.fetch_task())

    async def report_task(self, req: m.ReportTaskReq) -> m.ReportTaskResp:
        return await self._send(core.report_task(req))

    async def worker_get_task(self, uuid: UUID | str) -> m.TaskQueryResp:
        return await self._send(core.worker_get_task(uuid))

    async def worker_artifact_url(
        self, uuid: UUID | str, content_type: ArtifactContentType | str
    ) -> m.RemoteResourceDownloadResp:
        return await self._send(core.worker_artifact_url(uuid, content_type))

    async def worker_attachment_url(self, task_uuid: UUID | str, key: str) -> m.RemoteResourceDownloadResp:
        return await self._send(core.worker_attachment_url(task_uuid, key))

    # -------------------------------------------------------------------------------- admin (55-64)

    async def create_user(self, username: str, password: str, admin: bool = False) -> None:
        return await self._send(core.create_user(username, password, admin))

    async def delete_user(self, username: str) -> m.UserStateResp:
        return await self._send(core.delete_user(username))

    async def change_user_password(self, username: str, new_password: str) -> None:
        return await self._send(core.change_user_password(username, new_password))

    async def user_group_quota(self, username: str, group_quota: str) -> m.UserGroupQuotaResp:
        return await self._send(core.user_group_quota(username, group_quota))

    async def user_state(self, username: str, state: UserState | str) -> m.UserStateResp:
        return await self._send(core.user_state(username, state))

    async def group_storage_quota(self, group: str, storage_quota: str) -> m.GroupStorageQuotaResp:
        return await self._send(core.group_storage_quota(group, storage_quota))

    async def get_group_retention(self, group: str) -> m.GroupRetentionResp:
        """See :meth:`MitoClient.get_group_retention`."""
        return await self._send(core.get_group_retention(group))

    async def group_retention(self, group: str, retention_days: int | None) -> m.GroupRetentionResp:
        """See :meth:`MitoClient.group_retention`."""
        return await self._send(core.group_retention(group, retention_days))

    async def admin_cancel_worker(self, uuid: UUID | str, force: bool = False) -> None:
        return await self._send(core.admin_cancel_worker(uuid, force))

    async def admin_delete_attachment(self, group: str, key: str) -> None:
        return await self._send(core.admin_delete_attachment(group, key))

    async def admin_delete_artifact(self, uuid: UUID | str, content_type: ArtifactContentType | str) -> None:
        return await self._send(core.admin_delete_artifact(uuid, content_type))

    async def shutdown(self, secret: str) -> None:
        return await self._send(core.shutdown(secret))
