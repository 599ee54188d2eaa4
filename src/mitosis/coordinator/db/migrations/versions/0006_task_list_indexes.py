"""indexes for newest-first task pages of one group

Revision ID: 0006
Revises: 0005

Task queries and the dashboard list a group's tasks newest first, a page at a time; with
``(group_id, id)`` both task tables answer that with an index walk instead of a sort.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("idx_active_tasks-group_id-id", "active_tasks", ["group_id", "id"])
    op.create_index("idx_archived_tasks-group_id-id", "archived_tasks", ["group_id", "id"])


def downgrade() -> None:
    op.drop_index("idx_archived_tasks-group_id-id", table_name="archived_tasks")
    op.drop_index("idx_active_tasks-group_id-id", table_name="active_tasks")
