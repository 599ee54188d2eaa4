"""event log behind the event stream (our addition)

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mitosis.coordinator.db.types import StrArray, UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("groups", StrArray(), nullable=False),
        sa.Column("task_uuid", sa.Uuid(), nullable=True),
        sa.Column("worker_uuid", sa.Uuid(), nullable=True),
        sa.Column("state", sa.Text(), nullable=True),
        sa.Column("labels", StrArray(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("idx_events_created_at", "events", ["created_at"])
    op.create_index("idx_events_task_uuid", "events", ["task_uuid"])


def downgrade() -> None:
    op.drop_table("events")
