"""The sans-IO core of the SDK: every coordinator route as a :class:`Call` (method, path, query,
body, response decoder), plus decoding of error responses.

Both faces (:class:`~mitosis.client.sdk.MitoClient` over ``httpx.Client`` and
:class:`~mitosis.client.sdk.AsyncMitoClient` over ``httpx.AsyncClient``) only send a ``Call`` and
hand the reply back to it, so the route table of behavior.md §4.0 lives here once. Route numbers in
the comments refer to that table.

Request bodies are serialised with every field present (``None`` as ``null``) because a 0.6.8
coordinator requires some optional keys (``ChangeTaskReq.timeout``); our coordinator accepts both.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit
from uuid import UUID

from pydantic import BaseModel, ValidationError

from mitosis.client.errors import MitoError, ServerError, error_for_status
from mitosis.wire import models as m
from mitosis.wire.codecs import md5_digest_list, parse_uuid
from mitosis.wire.enums import ArtifactContentType, Role, UserState, WorkerShutdownOp

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

Decoder = Callable[[bytes], T]


@dataclass(frozen=True)
class Call(Generic[T]):
    """One HTTP exchange with the coordinator, described without doing any I/O."""

    method: str
    path: str
    decode: Decoder[T]
    body: Any = None
    params: list[tuple[str, str]] = field(default_factory=list)
    auth: bool = True

    def content(self) -> bytes | None:
        if self.body is None:
            return None
        return json.dumps(self.body, separators=(",", ":")).encode()

    def headers(self, token: str | None) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.body is not None:
            out["Content-Type"] = "application/json"
        if self.auth and token:
            out["Authorization"] = f"Bearer {token}"
        return out


def base_url(coordinator: str) -> str:
    """Scheme, host and port of the configured URL: the coordinator is always at the root (§4.0)."""
    text = coordinator.strip()
    if "://" not in text:
        text = f"http://{text}"
    problem = None
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in 0-65535
    except ValueError as exc:
        problem = str(exc)
    else:
        if parts.scheme not in ("http", "https"):
            problem = f"scheme {parts.scheme!r} is not http or https"
        elif not parts.hostname:
            problem = "no host"
    if problem is not None:
        raise MitoError(
            f"invalid coordinator URL {coordinator!r} ({problem}): expected e.g. http://127.0.0.1:5000"
        )
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


PLAIN_ERROR_MAX = 300
"""Longer plain-text error bodies are not a framework's one-line message but some other server's page."""


def decode_error(
    status: int,
    content: bytes,
    *,
    content_type: str | None = None,
    url: str | None = None,
    with_token: bool = False,
    username: str | None = None,
) -> MitoError:
    """The typed error of a non-200 reply.

    The coordinator answers ``{"msg": ...}``; framework errors (axum's, 0.6.8) are one line of plain
    text. Anything else (a proxy's or another server's HTML page) is summed up in one line naming
    the status, the content type and ``url`` instead of being dumped on the user. A 401 to a
    request that carried a token (``with_token``) is an :class:`AuthExpiredError`.
    """
    text = content.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("msg"), str):
        msg = data["msg"]
    elif not text:
        msg = {404: "not found (unknown route)", 405: "method not allowed"}.get(status, f"HTTP {status}")
    elif _plain_line(text, content_type):
        msg = text
    elif url is not None:
        kind = (content_type or "no content type").split(";")[0].strip()
        msg = f"unexpected HTTP {status} ({kind}) from {url}: is this a Mitosis coordinator?"
    else:
        msg = text.splitlines()[0][:PLAIN_ERROR_MAX]
    return error_for_status(status, msg, with_token=with_token, username=username)


def _plain_line(text: str, content_type: str | None) -> bool:
    kind = (content_type or "text/plain").split(";")[0].strip().lower()
    return kind == "text/plain" and "\n" not in text and len(text) <= PLAIN_ERROR_MAX


# ------------------------------------------------------------------------------------- decoders


def _model(cls: type[M]) -> Decoder[M]:
    def decode(content: bytes) -> M:
        try:
            return cls.model_validate_json(content)
        except ValidationError as exc:
            raise ServerError(unexpected_reply(cls.__name__, exc)) from None

    return decode


def unexpected_reply(what: str, exc: ValidationError) -> str:
    """One line saying why a 200 reply is not the expected model (never pydantic's full report)."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    if first["type"] == "json_invalid":
        why = "the body is not JSON"
    else:
        where = ".".join(str(p) for p in first["loc"]) or "body"
        why = f"{where}: {first['msg']}" + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")
    return f"unexpected reply from the coordinator, not a {what} ({why}): is it a Mitosis coordinator?"


def _empty(content: bytes) -> None:
    # Routes marked ∅ answer an empty body, worker routes the literal `null`: both mean nothing.
    return None


def _text(content: bytes) -> str:
    return content.decode("utf-8")


def _optional_task(content: bytes) -> m.WorkerTaskResp | None:
    if content.strip() in (b"", b"null"):
        return None
    return _model(m.WorkerTaskResp)(content)


# -------------------------------------------------------------------------------------- helpers


def seg(value: str) -> str:
    """One path segment (group name, username), fully percent-encoded."""
    return quote(value, safe="")


def key_path(key: str) -> str:
    """An attachment key: `{*key}` captures the rest of the path, so slashes stay slashes."""
    return quote(key, safe="/")


def as_uuid(value: UUID | str) -> UUID:
    return value if isinstance(value, UUID) else parse_uuid(value)


def _dump(model: BaseModel) -> Any:
    return model.model_dump(mode="json")


def _ct(value: ArtifactContentType | str) -> ArtifactContentType:
    return ArtifactContentType(value)


def _op(force: bool) -> list[tuple[str, str]]:
    return [("op", WorkerShutdownOp.Force.value)] if force else []


# ------------------------------------------------------------------------------ public, session


def health() -> Call[m.HealthResp]:  # 1
    return Call("GET", "/health", _model(m.HealthResp), auth=False)


def login(username: str, password: str, retain: bool = False) -> Call[m.UserLoginResp]:  # 2
    req = m.UserLoginReq(username=username, md5_password=md5_digest_list(password), retain=retain)
    return Call("POST", "/login", _model(m.UserLoginResp), _dump(req), auth=False)


def auth() -> Call[str]:  # 3: the body is the username as text/plain
    return Call("GET", "/auth", _text)


def redis() -> Call[m.RedisConnectionInfo]:  # 4
    return Call("GET", "/redis", _model(m.RedisConnectionInfo))


def change_password(username: str, old: str, new: str) -> Call[m.UserChangePasswordResp]:  # 5
    req = m.UserChangePasswordReq(
        old_md5_password=md5_digest_list(old), new_md5_password=md5_digest_list(new)
    )
    return Call("POST", f"/users/{seg(username)}/password", _model(m.UserChangePasswordResp), _dump(req))


def my_groups() -> Call[m.GroupsQueryResp]:  # 6
    return Call("GET", "/users/groups", _model(m.GroupsQueryResp))


# --------------------------------------------------------------------------------------- groups


def create_group(group: str) -> Call[None]:  # 7
    return Call("POST", "/groups", _empty, _dump(m.CreateGroupReq(group_name=group)))


def get_group(group: str) -> Call[m.GroupQueryInfo]:  # 8
    return Call("GET", f"/groups/{seg(group)}", _model(m.GroupQueryInfo))


def update_group_users(group: str, relations: Mapping[str, Role | str]) -> Call[None]:  # 9
    req = m.UpdateUserGroupRoleReq(relations={u: Role(r) for u, r in relations.items()})
    return Call("PUT", f"/groups/{seg(group)}/users", _empty, _dump(req))


def remove_group_users(group: str, users: Iterable[str], *, use_body: bool = False) -> Call[None]:
    names = list(dict.fromkeys(users))
    if use_body:  # 11
        body = _dump(m.RemoveUserGroupRoleReq(users=names))
        return Call("POST", f"/groups/{seg(group)}/users/remove", _empty, body)
    # 10: the route 0.6.8 clients use, users as a repeated query key
    return Call("DELETE", f"/groups/{seg(group)}/users", _empty, params=[("users", u) for u in names])


# ---------------------------------------------------------------------------------- attachments


def upload_attachment(group: str, key: str, content_length: int) -> Call[m.UploadAttachmentResp]:  # 12
    req = m.UploadAttachmentReq(key=key, content_length=content_length)
    return Call("POST", f"/groups/{seg(group)}/attachments", _model(m.UploadAttachmentResp), _dump(req))


def get_attachment(group: str, key: str) -> Call[m.AttachmentMetadata]:  # 13
    return Call("GET", f"/groups/{seg(group)}/attachments/{key_path(key)}", _model(m.AttachmentMetadata))


def delete_attachment(group: str, key: str) -> Call[None]:  # 14
    return Call("DELETE", f"/groups/{seg(group)}/attachments/{key_path(key)}", _empty)


def query_attachments(
    group: str,
    key: str | None = None,
    limit: int | None = None,
    offset: int | None = None,
    count: bool = False,
) -> Call[m.AttachmentsQueryResp]:  # 15
    req = m.AttachmentsQueryReq(key=key, limit=limit, offset=offset, count=count)
    return Call("POST", f"/groups/{seg(group)}/attachments/query", _model(m.AttachmentsQueryResp), _dump(req))


def attachment_download_url(group: str, key: str) -> Call[m.RemoteResourceDownloadResp]:  # 16
    path = f"/groups/{seg(group)}/download/attachments/{key_path(key)}"
    return Call("GET", path, _model(m.RemoteResourceDownloadResp))


def download_attachments_by_filter(
    group: str, key: str | None = None, limit: int | None = None, offset: int | None = None
) -> Call[m.AttachmentsDownloadListResp]:  # 17
    req = m.AttachmentsDownloadByFilterReq(key=key, limit=limit, offset=offset)
    path = f"/groups/{seg(group)}/download/attachments"
    return Call("POST", path, _model(m.AttachmentsDownloadListResp), _dump(req))


def download_attachments_by_keys(
    group: str, keys: Sequence[str]
) -> Call[m.AttachmentsDownloadListResp]:  # 18
    req = m.AttachmentsDownloadByKeysReq(keys=list(keys))
    path = f"/groups/{seg(group)}/download/attachments/list"
    return Call("POST", path, _model(m.AttachmentsDownloadListResp), _dump(req))


def delete_attachments_by_filter(
    group: str, key: str | None = None, limit: int | None = None, offset: int | None = None
) -> Call[m.AttachmentsDeleteByFilterResp]:  # 19
    req = m.AttachmentsDeleteByFilterReq(key=key, limit=limit, offset=offset)
    path = f"/groups/{seg(group)}/delete/attachments"
    return Call("POST", path, _model(m.AttachmentsDeleteByFilterResp), _dump(req))


def delete_attachments_by_keys(group: str, keys: Sequence[str]) -> Call[m.AttachmentsDeleteByKeysResp]:  # 20
    req = m.AttachmentsDeleteByKeysReq(keys=list(keys))
    path = f"/groups/{seg(group)}/delete/attachments/list"
    return Call("POST", path, _model(m.AttachmentsDeleteByKeysResp), _dump(req))


# ---------------------------------------------------------------------------------------- tasks


def submit_task(req: m.SubmitTaskReq) -> Call[m.SubmitTaskResp]:  # 21
    return Call("POST", "/tasks", _model(m.SubmitTaskResp), _dump(req))


def submit_tasks(reqs: Sequence[m.SubmitTaskReq]) -> Call[m.TasksSubmitResp]:  # 22
    return Call("POST", "/tasks/submit", _model(m.TasksSubmitResp), _dump(m.TasksSubmitReq(tasks=list(reqs))))


def get_task(uuid: UUID | str) -> Call[m.TaskQueryResp]:  # 23
    return Call("GET", f"/tasks/{as_uuid(uuid)}", _model(m.TaskQueryResp))


def change_task(uuid: UUID | str, req: m.ChangeTaskReq) -> Call[None]:  # 24
    return Call("PUT", f"/tasks/{as_uuid(uuid)}", _empty, _dump(req))


def cancel_task(uuid: UUID | str) -> Call[None]:  # 25
    return Call("DELETE", f"/tasks/{as_uuid(uuid)}", _empty)


def update_task_labels(uuid: UUID | str, labels: Iterable[str]) -> Call[None]:  # 26
    body = _dump(m.UpdateTaskLabelsReq(labels=list(labels)))
    return Call("PUT", f"/tasks/{as_uuid(uuid)}/labels", _empty, body)


def query_tasks(req: m.TasksQueryReq) -> Call[m.TasksQueryResp]:  # 27
    return Call("POST", "/tasks/query", _model(m.TasksQueryResp), _dump(req))


def cancel_tasks(req: m.TasksCancelByFilterReq) -> Call[m.TasksCancelByFilterResp]:  # 28
    return Call("POST", "/tasks/cancel", _model(m.TasksCancelByFilterResp), _dump(req))


def cancel_task_list(uuids: Iterable[UUID | str]) -> Call[m.TasksCancelByUuidsResp]:  # 29
    body = _dump(m.TasksCancelByUuidsReq(uuids=[as_uuid(u) for u in uuids]))
    return Call("POST", "/tasks/cancel/list", _model(m.TasksCancelByUuidsResp), body)


# ------------------------------------------------------------------------------------ artifacts


def upload_artifact(
    uuid: UUID | str, content_type: ArtifactContentType | str, content_length: int
) -> Call[m.UploadArtifactResp]:  # 30
    req = m.UploadArtifactReq(content_type=_ct(content_type), content_length=content_length)
    return Call("POST", f"/tasks/{as_uuid(uuid)}/artifacts", _model(m.UploadArtifactResp), _dump(req))


def artifact_download_url(
    uuid: UUID | str, content_type: ArtifactContentType | str
) -> Call[m.RemoteResourceDownloadResp]:  # 31
    path = f"/tasks/{as_uuid(uuid)}/download/artifacts/{_ct(content_type).value}"
    return Call("GET", path, _model(m.RemoteResourceDownloadResp))


def delete_artifact(uuid: UUID | str, content_type: ArtifactContentType | str) -> Call[None]:  # 32
    return Call("DELETE", f"/tasks/{as_uuid(uuid)}/artifacts/{_ct(content_type).value}", _empty)


def download_artifacts_by_filter(
    req: m.ArtifactsDownloadByFilterReq,
) -> Call[m.ArtifactsDownloadListResp]:  # 33
    return Call("POST", "/tasks/download/artifacts", _model(m.ArtifactsDownloadListResp), _dump(req))


def download_artifacts_by_uuids(
    uuids: Iterable[UUID | str], content_type: ArtifactContentType | str
) -> Call[m.ArtifactsDownloadListResp]:  # 34
    req = m.ArtifactsDownloadByUuidsReq(uuids=[as_uuid(u) for u in uuids], content_type=_ct(content_type))
    return Call("POST", "/tasks/download/artifacts/list", _model(m.ArtifactsDownloadListResp), _dump(req))


def delete_artifacts_by_filter(
    req: m.ArtifactsDeleteByFilterReq,
) -> Call[m.ArtifactsDeleteByFilterResp]:  # 35
    return Call("POST", "/tasks/delete/artifacts", _model(m.ArtifactsDeleteByFilterResp), _dump(req))


def delete_artifacts_by_uuids(
    uuids: Iterable[UUID | str], content_type: ArtifactContentType | str
) -> Call[m.ArtifactsDeleteByUuidsResp]:  # 36
    req = m.ArtifactsDeleteByUuidsReq(uuids=[as_uuid(u) for u in uuids], content_type=_ct(content_type))
    return Call("POST", "/tasks/delete/artifacts/list", _model(m.ArtifactsDeleteByUuidsResp), _dump(req))


# -------------------------------------------------------------------------------------- workers


def register_worker(req: m.RegisterWorkerReq) -> Call[m.RegisterWorkerResp]:  # 37
    return Call("POST", "/workers", _model(m.RegisterWorkerResp), _dump(req))


def get_worker(uuid: UUID | str) -> Call[m.WorkerQueryResp]:  # 38
    return Call("GET", f"/workers/{as_uuid(uuid)}", _model(m.WorkerQueryResp))


def cancel_worker(uuid: UUID | str, force: bool = False) -> Call[None]:  # 39
    return Call("DELETE", f"/workers/{as_uuid(uuid)}", _empty, params=_op(force))


def replace_worker_tags(uuid: UUID | str, tags: Iterable[str]) -> Call[None]:  # 40
    body = _dump(m.ReplaceWorkerTagsReq(tags=list(tags)))
    return Call("PUT", f"/workers/{as_uuid(uuid)}/tags", _empty, body)


def replace_worker_labels(uuid: UUID | str, labels: Iterable[str]) -> Call[None]:  # 41
    body = _dump(m.ReplaceWorkerLabelsReq(labels=list(labels)))
    return Call("PUT", f"/workers/{as_uuid(uuid)}/labels", _empty, body)


def update_worker_groups(uuid: UUID | str, relations: Mapping[str, Role | str]) -> Call[None]:  # 42
    body = _dump(m.UpdateGroupWorkerRoleReq(relations={g: Role(r) for g, r in relations.items()}))
    return Call("PUT", f"/workers/{as_uuid(uuid)}/groups", _empty, body)


def remove_worker_groups(uuid: UUID | str, groups: Iterable[str], *, use_body: bool = False) -> Call[None]:
    names = list(dict.fromkeys(groups))
    if use_body:  # 44: a JSON body on DELETE
        body = _dump(m.RemoveGroupWorkerRoleReq(groups=names))
        return Call("DELETE", f"/workers/{as_uuid(uuid)}/groups/remove", _empty, body)
    # 43: the route 0.6.8 clients use
    return Call("DELETE", f"/workers/{as_uuid(uuid)}/groups", _empty, params=[("groups", g) for g in names])


def query_workers(req: m.WorkersQueryReq) -> Call[m.WorkersQueryResp]:  # 45
    return Call("POST", "/workers/query", _model(m.WorkersQueryResp), _dump(req))


def shutdown_workers(req: m.WorkersShutdownByFilterReq) -> Call[m.WorkersShutdownByFilterResp]:  # 46
    return Call("POST", "/workers/shutdown", _model(m.WorkersShutdownByFilterResp), _dump(req))


def shutdown_worker_list(
    uuids: Iterable[UUID | str], force: bool = False
) -> Call[m.WorkersShutdownByUuidsResp]:
    op = WorkerShutdownOp.Force if force else WorkerShutdownOp.Graceful  # 47
    body = _dump(m.WorkersShutdownByUuidsReq(uuids=[as_uuid(u) for u in uuids], op=op))
    return Call("POST", "/workers/shutdown/list", _model(m.WorkersShutdownByUuidsResp), body)


# ---------------------------------------------------------------- worker protocol (worker token)


def unregister_worker() -> Call[None]:  # 48
    return Call("DELETE", "/workers", _empty)


def heartbeat() -> Call[None]:  # 49
    return Call("POST", "/workers/heartbeat", _empty)


def fetch_task() -> Call[m.WorkerTaskResp | None]:  # 50
    return Call("GET", "/workers/tasks", _optional_task)


def report_task(req: m.ReportTaskReq) -> Call[m.ReportTaskResp]:  # 51
    return Call("POST", "/workers/tasks", _model(m.ReportTaskResp), _dump(req))


def worker_get_task(uuid: UUID | str) -> Call[m.TaskQueryResp]:  # 52
    return Call("GET", f"/workers/tasks/{as_uuid(uuid)}", _model(m.TaskQueryResp))


def worker_artifact_url(
    uuid: UUID | str, content_type: ArtifactContentType | str
) -> Call[m.RemoteResourceDownloadResp]:  # 53
    path = f"/workers/tasks/{as_uuid(uuid)}/artifacts/{_ct(content_type).value}"
    return Call("GET", path, _model(m.RemoteResourceDownloadResp))


def worker_attachment_url(task_uuid: UUID | str, key: str) -> Call[m.RemoteResourceDownloadResp]:  # 54
    path = f"/workers/tasks/{as_uuid(task_uuid)}/attachments/{key_path(key)}"
    return Call("GET", path, _model(m.RemoteResourceDownloadResp))


# ---------------------------------------------------------------------------------------- admin


def create_user(username: str, password: str, admin: bool = False) -> Call[None]:  # 55
    req = m.CreateUserReq(username=username, md5_password=md5_digest_list(password), admin=admin)
    return Call("POST", "/admin/users", _empty, _dump(req))


def delete_user(username: str) -> Call[m.UserStateResp]:  # 56
    return Call("DELETE", f"/admin/users/{seg(username)}", _model(m.UserStateResp))


def change_user_password(username: str, new_password: str) -> Call[None]:  # 57
    req = m.AdminChangePasswordReq(new_md5_password=md5_digest_list(new_password))
    return Call("POST", f"/admin/users/{seg(username)}/password", _empty, _dump(req))


def user_group_quota(username: str, group_quota: str) -> Call[m.UserGroupQuotaResp]:  # 58
    body = _dump(m.ChangeUserGroupQuota(group_quota=group_quota))
    return Call("POST", f"/admin/users/{seg(username)}/group-quota", _model(m.UserGroupQuotaResp), body)


def user_state(username: str, state: UserState | str) -> Call[m.UserStateResp]:  # 59
    body = _dump(m.ChangeUserStateReq(state=UserState(state)))
    return Call("POST", f"/admin/users/{seg(username)}/state", _model(m.UserStateResp), body)


def group_storage_quota(group: str, storage_quota: str) -> Call[m.GroupStorageQuotaResp]:  # 60
    body = _dump(m.ChangeGroupStorageQuotaReq(storage_quota=storage_quota))
    path = f"/admin/groups/{seg(group)}/storage-quota"
    return Call("POST", path, _model(m.GroupStorageQuotaResp), body)


def get_group_retention(group: str) -> Call[m.GroupRetentionResp]:  # ours
    return Call("GET", f"/admin/groups/{seg(group)}/retention", _model(m.GroupRetentionResp))


def group_retention(group: str, retention_days: int | None) -> Call[m.GroupRetentionResp]:  # ours
    body = _dump(m.GroupRetentionReq(retention_days=retention_days))
    return Call("POST", f"/admin/groups/{seg(group)}/retention", _model(m.GroupRetentionResp), body)


def admin_cancel_worker(uuid: UUID | str, force: bool = False) -> Call[None]:  # 61
    return Call("DELETE", f"/admin/workers/{as_uuid(uuid)}", _empty, params=_op(force))


def admin_delete_attachment(group: str, key: str) -> Call[None]:  # 62
    return Call("DELETE", f"/admin/groups/{seg(group)}/attachments/{key_path(key)}", _empty)


def admin_delete_artifact(uuid: UUID | str, content_type: ArtifactContentType | str) -> Call[None]:  # 63
    return Call("DELETE", f"/admin/tasks/{as_uuid(uuid)}/artifacts/{_ct(content_type).value}", _empty)


def shutdown(secret: str) -> Call[None]:  # 64
    return Call("POST", "/admin/shutdown", _empty, _dump(m.ShutdownReq(secret=secret)))
