"""per-group retention of archived tasks, and NOTIFY of new events from a trigger

Revision ID: 0005
Revises: 0004

``groups.retention_days`` (nullable: use the coordinator's ``retention_days``) bounds how long a
group's archived tasks, their artifacts and their events are kept. On PostgreSQL a statement-level
trigger on ``events`` sends the ``mitosis_events`` NOTIFY that the services used to send as a
separate statement after every event insert: one round trip less per state change. Also on
PostgreSQL: GIN indexes on task labels and tags, which label/tag queries and counts need at scale.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("groups") as batch:
        batch.add_column(sa.Column("retention_days", sa.Integer(), nullable=True))
    op.create_index("idx_archived_tasks-group_id-updated_at", "archived_tasks", ["group_id", "updated_at"])
    if op.get_bind().dialect.name == "postgresql":
        # Label and tag filters (`@>`) of task queries and counts: without these a query by label
        # scans every archived task (benchmarks/state_scale.py).
        for table in ("active_tasks", "archived_tasks"):
            for column in ("labels", "tags"):
                op.execute(f'CREATE INDEX "idx_{table}-{column}-gin" ON {table} USING gin ({column})')
        op.execute(
            """
            CREATE OR REPLACE FUNCTION mitosis_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_notify('mitosis_events', '');
                RETURN NULL;
            END $$
            """
        )
        op.execute(
            "CREATE TRIGGER events_notify AFTER INSERT ON events "
            "FOR EACH STATEMENT EXECUTE FUNCTION mitosis_events_notify()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS events_notify ON events")
        op.execute("DROP FUNCTION IF EXISTS mitosis_events_notify()")
        for table in ("active_tasks", "archived_tasks"):
            for column in ("labels", "tags"):
                op.execute(f'DROP INDEX IF EXISTS "idx_{table}-{column}-gin"')
    op.drop_index("idx_archived_tasks-group_id-updated_at", table_name="archived_tasks")
    with op.batch_alter_table("groups") as batch:
        batch.drop_column("retention_days")
