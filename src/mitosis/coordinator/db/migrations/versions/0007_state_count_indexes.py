"""(group_id, state) indexes for counts by state; a duplicate tag index dropped

Revision ID: 0007
Revises: 0006

A count of a group's tasks in some state (``POST /tasks/query`` with ``states`` and ``count``)
read every row of the group: with ``(group_id, state)`` it is an index-only
scan of a small index (100,000 Ready tasks: 704 kB, 9 ms instead of a 15-20 ms table scan on
PostgreSQL). The plain ``group_id`` indexes it replaces were redundant: ``(group_id, id)`` and
``(group_id, task_id)`` already serve a lookup by group. On PostgreSQL, 0005 indexed
``active_tasks.tags`` a second time (0001 had ``idx_active_tasks-tags_gin``); every insert paid for
both. Building the two indexes takes under a second per million tasks (0.4 s for 1,000,000
archived tasks on the development machine), with writes to the task tables waiting meanwhile (docs/deployment.md, upgrades).
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TABLES = ("active_tasks", "archived_tasks")


def upgrade() -> None:
    for table in TABLES:
        op.create_index(f"idx_{table}-group_id-state", table, ["group_id", "state"])
        op.drop_index(f"idx_{table}-group_id", table_name=table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute('DROP INDEX IF EXISTS "idx_active_tasks-tags_gin"')


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_index("idx_active_tasks-tags_gin", "active_tasks", ["tags"], postgresql_using="gin")
    for table in TABLES:
        op.create_index(f"idx_{table}-group_id", table, ["group_id"])
        op.drop_index(f"idx_{table}-group_id-state", table_name=table)
