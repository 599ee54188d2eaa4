"""upload reservations: quota held by upload URLs until their bytes are seen in the blob store

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mitosis.coordinator.db.types import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "upload_reservations",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("bucket", sa.Text(), nullable=False),
        sa.Column("object_key", sa.Text(), nullable=False),
        sa.Column("group_id", sa.BigInteger(), nullable=False),
        sa.Column("attachment_key", sa.Text(), nullable=True),
        sa.Column("task_uuid", sa.Uuid(), nullable=True),
        sa.Column("content_type", sa.Integer(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["groups.id"],
            name="fk-upload_reservations-group_id",
            onupdate="CASCADE",
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("upload_reservations", schema=None) as batch_op:
        batch_op.create_index(
            "idx_upload_reservations-bucket-object_key", ["bucket", "object_key"], unique=False
        )
        batch_op.create_index(
            "idx_upload_reservations-group_id-expires_at", ["group_id", "expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("upload_reservations", schema=None) as batch_op:
        batch_op.drop_index("idx_upload_reservations-group_id-expires_at")
        batch_op.drop_index("idx_upload_reservations-bucket-object_key")
    op.drop_table("upload_reservations")
