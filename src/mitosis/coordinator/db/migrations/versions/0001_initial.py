"""initial schema (0.6.8 tables plus our additive columns)

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-27 13:14:09.087399
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mitosis.coordinator.db.types import StrArray, UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "artifacts",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("content_type", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.create_index("idx_artifacts-task_id-content_type", ["task_id", "content_type"], unique=True)
        batch_op.create_index("idx_artifacts_task_id", ["task_id"], unique=False)

    op.create_table(
        "users",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("encrypted_password", sa.Text(), nullable=False),
        sa.Column("auth_signature", sa.BigInteger(), nullable=True),
        sa.Column("reset_password_token", sa.Text(), nullable=True),
        sa.Column("reset_password_token_expiry", UtcDateTime(), nullable=True),
        sa.Column("current_sign_in_at", UtcDateTime(), nullable=True),
        sa.Column("last_sign_in_at", UtcDateTime(), nullable=True),
        sa.Column("current_sign_in_ip", sa.Text(), nullable=True),
        sa.Column("last_sign_in_ip", sa.Text(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("admin", sa.Boolean(), server_default=sa.text("(false)"), nullable=False),
        sa.Column("state", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("group_quota", sa.Integer(), server_default=sa.text("8"), nullable=False),
        sa.Column("group_count", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "groups",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("group_name", sa.Text(), nullable=False),
        sa.Column("creator_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("state", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("task_count", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("storage_quota", sa.BigInteger(), server_default=sa.text("(16000000000)"), nullable=False),
        sa.Column("storage_used", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.ForeignKeyConstraint(
            ["creator_id"], ["users.id"], name="fk-groups-creator_id", onupdate="CASCADE", ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("group_name"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("groups", schema=None) as batch_op:
        batch_op.create_index("idx_groups_creator_id", ["creator_id"], unique=False)

    op.create_table(
        "workers",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("worker_id", sa.Uuid(), nullable=False),
        sa.Column("creator_id", sa.BigInteger(), nullable=False),
        sa.Column("tags", StrArray(), nullable=False),
        sa.Column("labels", StrArray(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("state", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_heartbeat", UtcDateTime(), nullable=False),
        sa.Column("assigned_task_id", sa.BigInteger(), nullable=True),
        sa.Column("expires_at", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["creator_id"],
            ["users.id"],
            name="fk-workers-creator_id",
            onupdate="CASCADE",
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("worker_id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.create_index("idx_workers_creator_id", ["creator_id"], unique=False)
        batch_op.create_index("idx_workers_state_heartbeat", ["state", "last_heartbeat"], unique=False)

    op.create_table(
        "active_tasks",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("creator_id", sa.BigInteger(), nullable=False),
        sa.Column("group_id", sa.BigInteger(), nullable=False),
        sa.Column("task_id", sa.BigInteger(), nullable=False),
        sa.Column("uuid", sa.Uuid(), nullable=False),
        sa.Column("tags", StrArray(), nullable=False),
        sa.Column("labels", StrArray(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("state", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("assigned_worker", sa.BigInteger(), nullable=True),
        sa.Column("timeout", sa.BigInteger(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("upstream_task_uuid", sa.Uuid(), nullable=True),
        sa.Column("downstream_task_uuid", sa.Uuid(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), server_default=sa.text("(false)"), nullable=False),
        sa.ForeignKeyConstraint(
            ["creator_id"],
            ["users.id"],
            name="fk-active_tasks-creator_id",
            onupdate="CASCADE",
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["groups.id"],
            name="fk-active_tasks-group_id",
            onupdate="CASCADE",
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("uuid"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("active_tasks", schema=None) as batch_op:
        batch_op.create_index("idx_active_tasks-assigned_worker", ["assigned_worker"], unique=False)
        batch_op.create_index(
            "idx_active_tasks-creator_id-group_id", ["creator_id", "group_id"], unique=False
        )
        batch_op.create_index("idx_active_tasks-group_id", ["group_id"], unique=False)
        batch_op.create_index("idx_active_tasks-group_id-task_id", ["group_id", "task_id"], unique=True)
        batch_op.create_index("idx_active_tasks-priority", ["priority"], unique=False)
        batch_op.create_index("idx_active_tasks-state", ["state"], unique=False)

    op.create_table(
        "archived_tasks",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False
        ),
        sa.Column("creator_id", sa.BigInteger(), nullable=False),
        sa.Column("group_id", sa.BigInteger(), nullable=False),
        sa.Column("task_id", sa.BigInteger(), nullable=False),
        sa.Column("uuid", sa.Uuid(), nullable=False),
        sa.Column("tags", StrArray(), nullable=False),
        sa.Column("labels", StrArray(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("state", sa.Integer(), nullable=False),
        sa.Column("assigned_worker", sa.BigInteger(), nullable=True),
        sa.Column("timeout", sa.BigInteger(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("upstream_task_uuid", sa.Uuid(), nullable=True),
        sa.Column("downstream_task_uuid", sa.Uuid(), nullable=True),
        sa.Column("reporter_uuid", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["creator_id"],
            ["users.id"],
            name="fk-archived_tasks-creator_id",
            onupdate="CASCADE",
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["groups.id"],
            name="fk-archived_tasks-group_id",
            onupdate="CASCADE",
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("uuid"),
    )
    with op.batch_alter_table("archived_tasks", schema=None) as batch_op:
        batch_op.create_index(
            "idx_archived_tasks-creator_id-group_id", ["creator_id", "group_id"], unique=False
        )
        batch_op.create_index("idx_archived_tasks-group_id", ["group_id"], unique=False)
        batch_op.create_index("idx_archived_tasks-group_id-task_id", ["group_id", "task_id"], unique=True)
        batch_op.create_index("idx_archived_tasks-priority", ["priority"], unique=False)
        batch_op.create_index(
            "idx_archived_tasks-reporter_uuid",
            ["reporter_uuid"],
            unique=False,
            postgresql_where=sa.text("reporter_uuid IS NOT NULL"),
            sqlite_where=sa.text("reporter_uuid IS NOT NULL"),
        )
        batch_op.create_index("idx_archived_tasks-state", ["state"], unique=False)

    op.create_table(
        "attachments",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("group_id", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("content_type", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["groups.id"],
            name="fk-attachments-group_id",
            onupdate="CASCADE",
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("attachments", schema=None) as batch_op:
        batch_op.create_index("idx_attachments-group_id-key", ["group_id", "key"], unique=True)
        batch_op.create_index("idx_attachments_group_id", ["group_id"], unique=False)

    op.create_table(
        "group_worker",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("group_id", sa.BigInteger(), nullable=False),
        sa.Column("worker_id", sa.BigInteger(), nullable=False),
        sa.Column("role", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["groups.id"],
            name="fk-group_worker-group_id",
            onupdate="CASCADE",
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["worker_id"],
            ["workers.id"],
            name="fk-group_worker-worker_id",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("group_worker", schema=None) as batch_op:
        batch_op.create_index("idx_group_worker-group_id-worker_id", ["group_id", "worker_id"], unique=True)
        batch_op.create_index("idx_group_worker_group_role", ["group_id", "role"], unique=False)
        batch_op.create_index("idx_group_worker_worker_id", ["worker_id"], unique=False)

    op.create_table(
        "user_group",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("group_id", sa.BigInteger(), nullable=False),
        sa.Column("role", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["groups.id"],
            name="fk-user_group-group_id",
            onupdate="CASCADE",
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk-user_group-user_id", onupdate="CASCADE", ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("user_group", schema=None) as batch_op:
        batch_op.create_index("idx_user_group-user_id-group_id", ["user_id", "group_id"], unique=True)

    # Not reflected by autogenerate: the scheduler's partial claim index, and PostgreSQL-only
    # GIN indices on tags (0.6.8 migration m20250911_025409) and the labels default of 0.6.8.
    op.create_index(
        "idx_active_tasks-ready-claim",
        "active_tasks",
        ["group_id", sa.text("priority DESC"), "id"],
        postgresql_where=sa.text("state = 1"),
        sqlite_where=sa.text("state = 1"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.create_index("idx_active_tasks-tags_gin", "active_tasks", ["tags"], postgresql_using="gin")
        op.create_index("idx_workers-tags_gin", "workers", ["tags"], postgresql_using="gin")
        op.alter_column("workers", "labels", server_default=sa.text("'{}'"))


def downgrade() -> None:
    with op.batch_alter_table("user_group", schema=None) as batch_op:
        batch_op.drop_index("idx_user_group-user_id-group_id")

    op.drop_table("user_group")
    with op.batch_alter_table("group_worker", schema=None) as batch_op:
        batch_op.drop_index("idx_group_worker_worker_id")
        batch_op.drop_index("idx_group_worker_group_role")
        batch_op.drop_index("idx_group_worker-group_id-worker_id")

    op.drop_table("group_worker")
    with op.batch_alter_table("attachments", schema=None) as batch_op:
        batch_op.drop_index("idx_attachments_group_id")
        batch_op.drop_index("idx_attachments-group_id-key")

    op.drop_table("attachments")
    with op.batch_alter_table("archived_tasks", schema=None) as batch_op:
        batch_op.drop_index("idx_archived_tasks-state")
        batch_op.drop_index(
            "idx_archived_tasks-reporter_uuid",
            postgresql_where=sa.text("reporter_uuid IS NOT NULL"),
            sqlite_where=sa.text("reporter_uuid IS NOT NULL"),
        )
        batch_op.drop_index("idx_archived_tasks-priority")
        batch_op.drop_index("idx_archived_tasks-group_id-task_id")
        batch_op.drop_index("idx_archived_tasks-group_id")
        batch_op.drop_index("idx_archived_tasks-creator_id-group_id")

    op.drop_table("archived_tasks")
    with op.batch_alter_table("active_tasks", schema=None) as batch_op:
        batch_op.drop_index("idx_active_tasks-state")
        batch_op.drop_index("idx_active_tasks-priority")
        batch_op.drop_index("idx_active_tasks-group_id-task_id")
        batch_op.drop_index("idx_active_tasks-group_id")
        batch_op.drop_index("idx_active_tasks-creator_id-group_id")
        batch_op.drop_index("idx_active_tasks-assigned_worker")

    op.drop_table("active_tasks")
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.drop_index("idx_workers_state_heartbeat")
        batch_op.drop_index("idx_workers_creator_id")

    op.drop_table("workers")
    with op.batch_alter_table("groups", schema=None) as batch_op:
        batch_op.drop_index("idx_groups_creator_id")

    op.drop_table("groups")
    op.drop_table("users")
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.drop_index("idx_artifacts_task_id")
        batch_op.drop_index("idx_artifacts-task_id-content_type")

    op.drop_table("artifacts")
