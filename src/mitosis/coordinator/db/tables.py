"""The schema: the nine tables of 0.6.8 (behavior.md §2.2) plus our additive columns.

Names of tables, columns, foreign keys and indices follow 0.6.8 so a PostgreSQL database keeps
the shape the Rust coordinator expects. Our additions, all nullable or defaulted so 0.6.8 rows stay
valid: ``active_tasks.cancel_requested`` (cancel of a Running task, DECISIONS S5),
``workers.expires_at`` (worker lifetime, S15), a partial index that makes the claim query of
the scheduler an index scan, and the ``upload_reservations`` table (migration 0002) through which
storage quotas count only bytes really stored.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    Uuid,
    text,
)

from mitosis.coordinator.db.types import BigId, StrArray, UtcDateTime

metadata = MetaData()


def _fk(target: str, name: str) -> ForeignKey:
    """0.6.8's foreign keys: ON DELETE RESTRICT, ON UPDATE CASCADE."""
    return ForeignKey(target, name=name, ondelete="RESTRICT", onupdate="CASCADE")


users = Table(
    "users",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("username", Text, nullable=False, unique=True),
    Column("encrypted_password", Text, nullable=False),
    Column("auth_signature", BigInteger),
    Column("reset_password_token", Text),
    Column("reset_password_token_expiry", UtcDateTime),
    Column("current_sign_in_at", UtcDateTime),
    Column("last_sign_in_at", UtcDateTime),
    Column("current_sign_in_ip", Text),
    Column("last_sign_in_ip", Text),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("admin", Boolean, nullable=False, server_default=text("false")),
    Column("state", Integer, nullable=False, server_default=text("0")),
    Column("group_quota", Integer, nullable=False, server_default=text("8")),
    Column("group_count", Integer, nullable=False, server_default=text("1")),
)

groups = Table(
    "groups",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("group_name", Text, nullable=False, unique=True),
    Column("creator_id", BigInteger, _fk("users.id", "fk-groups-creator_id"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("state", Integer, nullable=False, server_default=text("0")),
    Column("task_count", BigInteger, nullable=False, server_default=text("0")),
    Column("storage_quota", BigInteger, nullable=False, server_default=text("16000000000")),
    Column("storage_used", BigInteger, nullable=False, server_default=text("0")),
    # Our addition (migration 0005): days archived tasks are kept; NULL = the coordinator's default.
    Column("retention_days", Integer),
    Index("idx_groups_creator_id", "creator_id"),
)

user_group = Table(
    "user_group",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("user_id", BigInteger, _fk("users.id", "fk-user_group-user_id"), nullable=False),
    Column("group_id", BigInteger, _fk("groups.id", "fk-user_group-group_id"), nullable=False),
    Column("role", Integer, nullable=False),
    Index("idx_user_group-user_id-group_id", "user_id", "group_id", unique=True),
)

workers = Table(
    "workers",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("worker_id", Uuid, nullable=False, unique=True),
    Column("creator_id", BigInteger, _fk("users.id", "fk-workers-creator_id"), nullable=False),
    Column("tags", StrArray, nullable=False),
    Column("labels", StrArray, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("state", Integer, nullable=False, server_default=text("0")),
    Column("last_heartbeat", UtcDateTime, nullable=False),
    Column("assigned_task_id", BigInteger),
    Column("expires_at", UtcDateTime),
    Index("idx_workers_creator_id", "creator_id"),
    Index("idx_workers_state_heartbeat", "state", "last_heartbeat"),
)

group_worker = Table(
    "group_worker",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column(
        "group_id",
        BigInteger,
        _fk("groups.id", "fk-group_worker-group_id"),
        nullable=False,
    ),
    Column(
        "worker_id",
        BigInteger,
        ForeignKey("workers.id", name="fk-group_worker-worker_id", ondelete="CASCADE", onupdate="CASCADE"),
        nullable=False,
    ),
    Column("role", Integer, nullable=False),
    Index("idx_group_worker-group_id-worker_id", "group_id", "worker_id", unique=True),
    Index("idx_group_worker_group_role", "group_id", "role"),
    Index("idx_group_worker_worker_id", "worker_id"),
)


def _task_columns(archived: bool) -> list[Column[object]]:
    prefix = "archived_tasks" if archived else "active_tasks"
    cols: list[Column[object]] = [
        Column(
            "id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=not archived
        ),
        Column(
            "creator_id",
            BigInteger,
            _fk("users.id", f"fk-{prefix}-creator_id"),
            nullable=False,
        ),
        Column(
            "group_id",
            BigInteger,
            _fk("groups.id", f"fk-{prefix}-group_id"),
            nullable=False,
        ),
        Column("task_id", BigInteger, nullable=False),
        Column("uuid", Uuid, nullable=False, unique=True),
        Column("tags", StrArray, nullable=False),
        Column("labels", StrArray, nullable=False),
        Column("created_at", UtcDateTime, nullable=False),
        Column("updated_at", UtcDateTime, nullable=False),
        Column("state", Integer, nullable=False, server_default=None if archived else text("0")),
        Column("assigned_worker", BigInteger),
        Column("timeout", BigInteger, nullable=False),
        Column("priority", Integer, nullable=False),
        Column("spec", JSON, nullable=False),
        Column("result", JSON),
        Column("upstream_task_uuid", Uuid),
        Column("downstream_task_uuid", Uuid),
    ]
    return cols


active_tasks = Table(
    "active_tasks",
    metadata,
    *_task_columns(archived=False),
    Column("cancel_requested", Boolean, nullable=False, server_default=text("false")),
    Index("idx_active_tasks-group_id-task_id", "group_id", "task_id", unique=True),
    Index("idx_active_tasks-state", "state"),
    # Counts by state read this index only (migration 0007).
    Index("idx_active_tasks-group_id-state", "group_id", "state"),
    Index("idx_active_tasks-priority", "priority"),
    Index("idx_active_tasks-creator_id-group_id", "creator_id", "group_id"),
    # The scheduler's claim walks Ready tasks of one group in (priority desc, id) order.
    Index(
        "idx_active_tasks-ready-claim",
        "group_id",
        text("priority DESC"),
        "id",
        postgresql_where=text("state = 1"),
        sqlite_where=text("state = 1"),
    ),
    Index("idx_active_tasks-assigned_worker", "assigned_worker"),
    Index("idx_active_tasks-group_id-id", "group_id", "id"),
    # An archived task keeps its id: SQLite must never hand that id out again (plain rowids reuse
    # the highest id once its row is deleted), so active_tasks uses AUTOINCREMENT there.
    sqlite_autoincrement=True,
)

archived_tasks = Table(
    "archived_tasks",
    metadata,
    *_task_columns(archived=True),
    Column("reporter_uuid", Uuid),
    Index("idx_archived_tasks-group_id-task_id", "group_id", "task_id", unique=True),
    Index("idx_archived_tasks-state", "state"),
    Index("idx_archived_tasks-group_id-id", "group_id", "id"),
    Index("idx_archived_tasks-group_id-state", "group_id", "state"),
    Index("idx_archived_tasks-priority", "priority"),
    Index("idx_archived_tasks-creator_id-group_id", "creator_id", "group_id"),
    # Retention (migration 0005) deletes a group's oldest archived tasks.
    Index("idx_archived_tasks-group_id-updated_at", "group_id", "updated_at"),
    Index(
        "idx_archived_tasks-reporter_uuid",
        "reporter_uuid",
        postgresql_where=text("reporter_uuid IS NOT NULL"),
        sqlite_where=text("reporter_uuid IS NOT NULL"),
    ),
)

attachments = Table(
    "attachments",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column(
        "group_id",
        BigInteger,
        _fk("groups.id", "fk-attachments-group_id"),
        nullable=False,
    ),
    Column("key", Text, nullable=False),
    Column("content_type", Integer, nullable=False, server_default=text("0")),
    Column("size", BigInteger, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("idx_attachments-group_id-key", "group_id", "key", unique=True),
    Index("idx_attachments_group_id", "group_id"),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("task_id", Uuid, nullable=False),
    Column("content_type", Integer, nullable=False, server_default=text("0")),
    Column("size", BigInteger, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("idx_artifacts-task_id-content_type", "task_id", "content_type", unique=True),
    Index("idx_artifacts_task_id", "task_id"),
)

# Our addition: the durable log of task and worker state changes behind the event stream. Written in
# the same transaction as the change it records, so a reader that reconnects with Last-Event-ID
# sees every change in order, whichever coordinator made it. Old rows are pruned (bounded window).
events = Table(
    "events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("kind", Text, nullable=False),
    Column("groups", StrArray, nullable=False),
    Column("task_uuid", Uuid),
    Column("worker_uuid", Uuid),
    Column("state", Text),
    Column("labels", StrArray, nullable=False),
    Column("data", JSON),
    Index("idx_events_created_at", "created_at"),
    Index("idx_events_task_uuid", "task_uuid"),
)

# Our addition (migration 0004): live output of running tasks, shared by every coordinator. A
# stream's bytes arrive in order as chunks keyed by their byte offset, so a retried upload is
# recognised and never stored twice. ``task_log_streams`` keeps, per task and stream, how many bytes
# arrived (``size``), how many are still kept (``stored``), how far readers got (``read_offset``: chunks below it may be evicted to make
# room) and which worker produced them (a re-queued task starts its output again from zero).
task_log_chunks = Table(
    "task_log_chunks",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("task_uuid", Uuid, nullable=False),
    Column("stream", Text, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("size", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index("idx_task_log_chunks-task_uuid-stream-offset", "task_uuid", "stream", "offset", unique=True),
    Index("idx_task_log_chunks-task_uuid-id", "task_uuid", "id"),
)

task_log_streams = Table(
    "task_log_streams",
    metadata,
    Column("task_uuid", Uuid, primary_key=True),
    Column("stream", Text, primary_key=True),
    Column("worker_uuid", Uuid, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("stored", BigInteger, nullable=False),
    Column("read_offset", BigInteger, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# One row per upload URL handed out and not yet settled (services/storage.py): the bytes it may add
# count against the group's quota, but ``groups.storage_used`` only changes once the object is seen
# in the blob store. ``attachment_key`` or ``task_uuid``/``content_type`` say which row it settles.
upload_reservations = Table(
    "upload_reservations",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("bucket", Text, nullable=False),
    Column("object_key", Text, nullable=False),
    Column(
        "group_id",
        BigInteger,
        _fk("groups.id", "fk-upload_reservations-group_id"),
        nullable=False,
    ),
    Column("attachment_key", Text),
    Column("task_uuid", Uuid),
    Column("content_type", Integer),
    Column("size", BigInteger, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Index("idx_upload_reservations-bucket-object_key", "bucket", "object_key"),
    Index("idx_upload_reservations-group_id-expires_at", "group_id", "expires_at"),
)

# SQLite must never reuse a row id: a re-used active task id would collide with its archived copy.
for _table in metadata.tables.values():
    if _table is not archived_tasks:
        _table.dialect_kwargs["sqlite_autoincrement"] = True
