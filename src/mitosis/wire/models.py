"""Pydantic models of the HTTP contract (behavior.md §3.9), shared by coordinator, worker and client.

Names and fields follow the 0.6.8 structs one to one. Responses always carry every field (``None``
serialises as ``null``); requests may omit optional fields. Sets travel as JSON arrays and are
de-duplicated on input. Our own additions to the contract live at the end of the module and are
marked as such.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    model_serializer,
    model_validator,
)

from mitosis.wire.codecs import (
    format_datetime,
    format_duration,
    parse_datetime,
    parse_duration,
    parse_uuid,
    validate_md5_list,
)
from mitosis.wire.enums import (
    ArtifactContentType,
    AttachmentContentType,
    GroupState,
    Role,
    TaskExecState,
    TaskResultMessage,
    TaskState,
    UserState,
    WorkerShutdownOp,
    WorkerState,
)

# Batch requests (uuid lists, batch submission) hold at most this many items: larger batches are
# refused with a clear 422 instead of tying a coordinator up (issue 8); split them client-side.
MAX_BATCH_ITEMS = 10_000

# Both databases store integers in 64 bits: a larger limit or offset is a 400, not a failed query.
I64_MAX = 2**63 - 1


def _to_datetime(value: Any) -> Any:
    return parse_datetime(value) if isinstance(value, str) else value


def _to_duration(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    return value


def _to_uuid(value: Any) -> Any:
    return parse_uuid(value) if isinstance(value, str) else value


def _dedupe(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _md5(values: list[int]) -> list[int]:
    validate_md5_list(values)
    return values


WireDatetime = Annotated[
    datetime, BeforeValidator(_to_datetime), PlainSerializer(format_datetime, return_type=str)
]
WireDuration = Annotated[
    timedelta, BeforeValidator(_to_duration), PlainSerializer(format_duration, return_type=str)
]
WireUuid = Annotated[UUID, BeforeValidator(_to_uuid)]
StrSet = Annotated[list[str], AfterValidator(_dedupe)]
Md5Password = Annotated[list[int], AfterValidator(_md5)]


class WireModel(BaseModel):
    """Base for every wire struct: unknown request fields are ignored, enums emit their names."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


# ----------------------------------------------------------------------------------------- users


class UserLoginReq(WireModel):
    # No length bounds: as 0.6.8, a name no user has is a 401, whatever its length.
    username: str
    md5_password: Md5Password
    retain: bool = False


class UserLoginResp(WireModel):
    token: str


class UserChangePasswordReq(WireModel):
    old_md5_password: Md5Password
    new_md5_password: Md5Password


class UserChangePasswordResp(WireModel):
    token: str


class AdminChangePasswordReq(WireModel):
    new_md5_password: Md5Password


class CreateUserReq(WireModel):
    username: str  # validated by the service: 400 `Invalid username` as 0.6.8
    md5_password: Md5Password
    admin: bool = False


class ChangeUserStateReq(WireModel):
    state: UserState


class UserStateResp(WireModel):
    state: UserState


class ChangeUserGroupQuota(WireModel):
    group_quota: str = Field(max_length=64)


class UserGroupQuotaResp(WireModel):
    group_quota: int


class ShutdownReq(WireModel):
    secret: str = Field(max_length=1024)


class RedisConnectionInfo(WireModel):
    url: str | None = None


# ---------------------------------------------------------------------------------------- groups


class CreateGroupReq(WireModel):
    group_name: str  # validated by the service: 400 `Invalid group name` as 0.6.8


class GroupQueryInfo(WireModel):
    group_name: str
    creator_username: str
    created_at: WireDatetime
    updated_at: WireDatetime
    state: GroupState
    task_count: int
    storage_quota: int
    storage_used: int
    worker_count: int
    users_in_group: dict[str, Role] | None = None


class GroupsQueryResp(WireModel):
    groups: dict[str, Role]


class UpdateUserGroupRoleReq(WireModel):
    relations: dict[str, Role]


class RemoveUserGroupRoleReq(WireModel):
    users: StrSet


class ChangeGroupStorageQuotaReq(WireModel):
    storage_quota: str = Field(max_length=64)


class GroupStorageQuotaResp(WireModel):
    storage_quota: int


# ----------------------------------------------------------------------------------------- tasks


class ArtifactRef(WireModel):
    uuid: WireUuid
    content_type: ArtifactContentType


class AttachmentRef(WireModel):
    key: str


class RemoteResource(WireModel):
    """Externally tagged: ``{"Artifact": {...}}`` or ``{"Attachment": {...}}``."""

    Artifact: ArtifactRef | None = None
    Attachment: AttachmentRef | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> RemoteResource:
        if (self.Artifact is None) == (self.Attachment is None):
            raise ValueError('a remote resource is either {"Artifact": {...}} or {"Attachment": {...}}')
        return self

    @model_serializer
    def _tagged(self) -> dict[str, Any]:
        if self.Artifact is not None:
            return {"Artifact": self.Artifact.model_dump(mode="json")}
        assert self.Attachment is not None
        return {"Attachment": self.Attachment.model_dump(mode="json")}


class RemoteResourceDownload(WireModel):
    remote_file: RemoteResource
    local_path: str = Field(max_length=4096)


class ResourceLimits(WireModel):
    """Our extension: optional per-task limits, enforced by the worker with setrlimit."""

    cpu_seconds: int | None = Field(default=None, ge=1)
    memory_bytes: int | None = Field(default=None, ge=1 << 20)
    open_files: int | None = Field(default=None, ge=16)
    processes: int | None = Field(default=None, ge=1)


class TaskSpec(WireModel):
    args: list[str]
    envs: dict[str, str] = Field(default_factory=dict)
    resources: list[RemoteResourceDownload] = Field(default_factory=list)
    terminal_output: bool = False
    watch: tuple[WireUuid, TaskExecState] | None = None
    limits: ResourceLimits | None = None

    @model_serializer(mode="wrap")
    def _omit_absent_extensions(self, handler: Any) -> dict[str, Any]:
        # 0.6.8 clients never send `limits`; keep their stored specs byte-identical.
        data: dict[str, Any] = handler(self)
        if data.get("limits") is None:
            data.pop("limits", None)
        return data


class SubmitTaskReq(WireModel):
    group_name: str = Field(max_length=255)
    tags: StrSet = Field(default_factory=list)
    labels: StrSet = Field(default_factory=list)
    timeout: WireDuration = timedelta(minutes=10)
    priority: int = Field(default=0, ge=-(2**31), le=2**31 - 1)
    task_spec: TaskSpec


class SubmitTaskResp(WireModel):
    task_id: int
    uuid: UUID


class TasksSubmitReq(WireModel):
    tasks: list[SubmitTaskReq] = Field(max_length=MAX_BATCH_ITEMS)


class ErrorMsg(WireModel):
    msg: str


class SubmitOk(WireModel):
    Ok: SubmitTaskResp


class SubmitErr(WireModel):
    Err: ErrorMsg


class TasksSubmitResp(WireModel):
    results: list[SubmitOk | SubmitErr]


class ChangeTaskReq(WireModel):
    tags: StrSet | None = None
    timeout: WireDuration | None = None
    priority: int | None = Field(default=None, ge=-(2**31), le=2**31 - 1)
    task_spec: TaskSpec | None = None


class UpdateTaskLabelsReq(WireModel):
    labels: StrSet


class TaskResultSpec(WireModel):
    exit_status: int
    msg: TaskResultMessage | None = None


class TaskQueryInfo(WireModel):
    uuid: UUID
    creator_username: str
    group_name: str
    task_id: int
    tags: list[str]
    labels: list[str]
    created_at: WireDatetime
    updated_at: WireDatetime
    state: TaskState
    timeout: int
    priority: int
    spec: Any
    result: Any | None = None
    upstream_task_uuid: UUID | None = None
    downstream_task_uuid: UUID | None = None
    reporter_uuid: UUID | None = None


class ParsedTaskQueryInfo(WireModel):
    uuid: UUID
    creator_username: str
    group_name: str
    task_id: int
    tags: list[str]
    labels: list[str]
    created_at: WireDatetime
    updated_at: WireDatetime
    state: TaskState
    timeout: int
    priority: int
    spec: TaskSpec
    result: TaskResultSpec | None = None
    upstream_task_uuid: UUID | None = None
    downstream_task_uuid: UUID | None = None
    reporter_uuid: UUID | None = None


class ArtifactQueryResp(WireModel):
    content_type: ArtifactContentType
    size: int
    created_at: WireDatetime
    updated_at: WireDatetime


class TaskQueryResp(WireModel):
    info: ParsedTaskQueryInfo
    artifacts: list[ArtifactQueryResp]


class TaskFilter(WireModel):
    """Filter fields shared by task query, batch cancel and artifact batch operations."""

    creator_usernames: StrSet | None = None
    group_name: str | None = Field(default=None, max_length=255)
    tags: StrSet | None = None
    labels: StrSet | None = None
    states: list[TaskState] | None = None
    exit_status: str | None = Field(default=None, max_length=32)
    priority: str | None = Field(default=None, max_length=32)


class TasksQueryReq(TaskFilter):
    reporter_uuid: WireUuid | None = None
    limit: int | None = Field(default=None, ge=0, le=I64_MAX)
    offset: int | None = Field(default=None, ge=0, le=I64_MAX)
    count: bool = False


class TasksQueryResp(WireModel):
    count: int
    tasks: list[TaskQueryInfo]
    group_name: str


class TasksCancelByFilterReq(TaskFilter):
    pass


class TasksCancelByFilterResp(WireModel):
    cancelled_count: int
    group_name: str


class TasksCancelByUuidsReq(WireModel):
    uuids: list[WireUuid] = Field(max_length=MAX_BATCH_ITEMS)


class TasksCancelByUuidsResp(WireModel):
    cancelled_count: int
    failed_uuids: list[UUID]


# ----------------------------------------------------------------------- artifacts, attachments


class UploadArtifactReq(WireModel):
    content_type: ArtifactContentType
    content_length: int = Field(ge=0)


class UploadArtifactResp(WireModel):
    exist: bool
    url: str


class UploadAttachmentReq(WireModel):
    key: str  # validated by mitosis.wire.keys with a message that says what is wrong
    content_length: int = Field(ge=0)


class UploadAttachmentResp(WireModel):
    exist: bool
    url: str


class RemoteResourceDownloadResp(WireModel):
    url: str
    size: int


class AttachmentMetadata(WireModel):
    content_type: AttachmentContentType
    size: int
    created_at: WireDatetime
    updated_at: WireDatetime


class AttachmentsQueryReq(WireModel):
    key: str | None = Field(default=None, max_length=1024)
    limit: int | None = Field(default=None, ge=0, le=I64_MAX)
    offset: int | None = Field(default=None, ge=0, le=I64_MAX)
    count: bool = False


class AttachmentQueryInfo(WireModel):
    key: str
    content_type: AttachmentContentType
    size: int
    created_at: WireDatetime
    updated_at: WireDatetime


class AttachmentsQueryResp(WireModel):
    count: int
    attachments: list[AttachmentQueryInfo]
    group_name: str


class ArtifactsDownloadByFilterReq(TaskFilter):
    reporter_uuid: WireUuid | None = None
    content_type: ArtifactContentType


class ArtifactsDownloadByUuidsReq(WireModel):
    uuids: list[WireUuid] = Field(max_length=MAX_BATCH_ITEMS)
    content_type: ArtifactContentType


class ArtifactDownloadItem(WireModel):
    uuid: UUID
    url: str
    size: int


class ArtifactsDownloadListResp(WireModel):
    downloads: list[ArtifactDownloadItem]


class AttachmentsDownloadByFilterReq(WireModel):
    key: str | None = Field(default=None, max_length=1024)
    limit: int | None = Field(default=None, ge=0, le=I64_MAX)
    offset: int | None = Field(default=None, ge=0, le=I64_MAX)


class AttachmentsDownloadByKeysReq(WireModel):
    keys: list[str]


class AttachmentDownloadItem(WireModel):
    key: str
    url: str
    size: int


class AttachmentsDownloadListResp(WireModel):
    downloads: list[AttachmentDownloadItem]
    group_name: str


class ArtifactsDeleteByFilterReq(ArtifactsDownloadByFilterReq):
    pass


class ArtifactsDeleteByUuidsReq(ArtifactsDownloadByUuidsReq):
    pass


class ArtifactsDeleteByFilterResp(WireModel):
    deleted_count: int


class ArtifactsDeleteByUuidsResp(WireModel):
    deleted_count: int
    failed_uuids: list[UUID]


class AttachmentsDeleteByFilterReq(AttachmentsDownloadByFilterReq):
    pass


class AttachmentsDeleteByKeysReq(AttachmentsDownloadByKeysReq):
    pass


class AttachmentsDeleteByFilterResp(WireModel):
    deleted_count: int
    group_name: str


class AttachmentsDeleteByKeysResp(WireModel):
    deleted_count: int
    failed_keys: list[str]
    group_name: str


# --------------------------------------------------------------------------------------- workers


class RegisterWorkerReq(WireModel):
    tags: StrSet = Field(default_factory=list)
    labels: StrSet = Field(default_factory=list)
    groups: StrSet = Field(default_factory=list)
    lifetime: WireDuration | None = None


class RegisterWorkerResp(WireModel):
    worker_id: UUID
    token: str
    redis_url: str | None = None


class WorkerQueryInfo(WireModel):
    worker_id: UUID
    creator_username: str
    tags: list[str]
    labels: list[str]
    created_at: WireDatetime
    updated_at: WireDatetime
    state: WorkerState
    last_heartbeat: WireDatetime
    assigned_task_id: UUID | None = None


class WorkerQueryResp(WireModel):
    info: WorkerQueryInfo
    groups: dict[str, Role]


class WorkerFilter(WireModel):
    group_name: str | None = Field(default=None, max_length=255)
    role: list[Role] | None = None
    tags: StrSet | None = None
    labels: StrSet | None = None
    creator_username: str | None = Field(default=None, max_length=255)


class WorkersQueryReq(WorkerFilter):
    count: bool = False


class WorkersQueryResp(WireModel):
    count: int
    workers: list[WorkerQueryInfo]
    group_name: str


class WorkersShutdownByFilterReq(WorkerFilter):
    op: WorkerShutdownOp = WorkerShutdownOp.Graceful


class WorkersShutdownByFilterResp(WireModel):
    shutdown_count: int
    group_name: str


class WorkersShutdownByUuidsReq(WireModel):
    uuids: list[WireUuid] = Field(max_length=MAX_BATCH_ITEMS)
    op: WorkerShutdownOp = WorkerShutdownOp.Graceful


class WorkersShutdownByUuidsResp(WireModel):
    shutdown_count: int
    failed_uuids: list[UUID]


class ReplaceWorkerTagsReq(WireModel):
    tags: StrSet


class ReplaceWorkerLabelsReq(WireModel):
    labels: StrSet


class UpdateGroupWorkerRoleReq(WireModel):
    relations: dict[str, Role]


class RemoveGroupWorkerRoleReq(WireModel):
    groups: StrSet


# ------------------------------------------------------------------------------- worker protocol


class WorkerTaskResp(WireModel):
    id: int
    uuid: UUID
    timeout: WireDuration
    upstream_task_uuid: UUID | None = None
    spec: TaskSpec


class UploadOpBody(WireModel):
    content_type: ArtifactContentType
    content_length: int = Field(ge=0)


class SubmitOp(WireModel):
    Submit: SubmitTaskReq


class CommitOp(WireModel):
    Commit: TaskResultSpec


class UploadOp(WireModel):
    Upload: UploadOpBody


ReportTaskOp = Literal["Finish", "Cancel"] | SubmitOp | CommitOp | UploadOp


class ReportTaskReq(WireModel):
    id: int
    op: ReportTaskOp


class ReportTaskResp(WireModel):
    url: str | None = None


# ----------------------------------------------------------------------------- our own additions


class WorkerSignalsResp(WireModel):
    """Our addition: what a worker must act on now (answer of ``GET /workers/signals``)."""

    cancel: list[int] = Field(default_factory=list)


class GroupRetentionReq(WireModel):
    """Our addition (``POST /admin/groups/{group}/retention``): how long the group's archived tasks
    are kept, in days; 0 keeps them forever, null falls back to the coordinator's ``retention_days``."""

    retention_days: int | None = Field(ge=0, le=36_500)


class GroupRetentionResp(WireModel):
    retention_days: int | None
    """The group's own setting (null: the coordinator's default applies)."""
    effective_days: int | None
    """What the clean-up applies to the group now (null: kept forever)."""


class HealthResp(WireModel):
    status: str


# Our addition: the batched worker protocol (``POST /workers/batch``). One round trip commits the
# tasks a worker has ended, gives back tasks it claimed but will not start, and claims new ones.
MAX_WORKER_BATCH = 1024
MAX_WORKER_FETCH = 64


class WorkerTaskDone(WireModel):
    """A task the worker has ended: its last state (``Finish`` or ``Cancel``) and its result.

    The coordinator applies both at once, as a ``Finish``/``Cancel`` report followed by a
    ``Commit``. Artifacts must have been uploaded (``Upload`` reports) before."""

    id: int
    op: Literal["Finish", "Cancel"]
    result: TaskResultSpec


class WorkerBatchReq(WireModel):
    done: list[WorkerTaskDone] = Field(default_factory=list, max_length=MAX_WORKER_BATCH)
    release: list[int] = Field(
        default_factory=list,
        max_length=MAX_WORKER_BATCH,
        description="tasks claimed but not started: back to Ready for any worker",
    )
    holding: list[int] | None = Field(
        default=None,
        max_length=MAX_WORKER_BATCH,
        description="every task the worker still holds (running or queued); tasks assigned to it "
        "but missing here (a claim whose answer was lost) go back to Ready",
    )
    fetch: int = Field(default=0, ge=0, le=MAX_WORKER_FETCH, description="claim up to this many tasks")
    wait: WireDuration | None = Field(
        default=None, description="long-poll: when nothing can be claimed at once, wait this long"
    )


class WorkerBatchRefusal(WireModel):
    """A ``done`` entry the coordinator did not apply, with the status a single report would get."""

    id: int
    status: int
    msg: str


class WorkerBatchResp(WireModel):
    refused: list[WorkerBatchRefusal] = Field(default_factory=list)
    tasks: list[WorkerTaskResp] = Field(default_factory=list)
    cancel: list[int] = Field(
        default_factory=list, description="held tasks whose user asked to cancel them: stop them"
    )
    lost: list[int] = Field(
        default_factory=list, description="held tasks no longer assigned to this worker: drop them"
    )
