"""composition: parents and children, a step's tries, items, child and remote call; flow revisions

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# plain ALTER TABLE ADD COLUMN on both databases: a batch (table copy) on SQLite would drop the
# triggers that keep the counters
EXECUTION_COLUMNS = [
    sa.Column("parent_execution_id", sa.String(length=36), nullable=True),
    sa.Column("parent_node_id", sa.String(length=64), nullable=True),
    sa.Column("rerun_of", sa.String(length=36), nullable=True),
    sa.Column("trace_id", sa.String(length=32), nullable=True),
]
STEP_COLUMNS = [
    sa.Column("attempts", sa.Text(), nullable=True),
    sa.Column("items", sa.Text(), nullable=True),
    sa.Column("child_execution_id", sa.String(length=36), nullable=True),
    sa.Column("remote", sa.Text(), nullable=True),
]


def upgrade() -> None:
    for column in EXECUTION_COLUMNS:
        op.add_column("executions", column)
    for column in STEP_COLUMNS:
        op.add_column("execution_steps", column)
    op.create_index(
        "ix_executions_children",
        "executions",
        ["parent_execution_id", "id"],
        unique=False,
        sqlite_where=sa.text("parent_execution_id IS NOT NULL"),
        postgresql_where=sa.text("parent_execution_id IS NOT NULL"),
    )
    op.create_table(
        "flow_revisions",
        sa.Column("flow_id", sa.String(length=36), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("definition", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("flow_id", "revision", name=op.f("pk_flow_revisions")),
    )
    op.execute(
        "INSERT INTO flow_revisions (flow_id, revision, definition, created_at) "
        "SELECT id, revision, definition, updated_at FROM flows"
    )


def downgrade() -> None:
    op.drop_table("flow_revisions")
    op.drop_index(
        "ix_executions_children",
        table_name="executions",
        sqlite_where=sa.text("parent_execution_id IS NOT NULL"),
        postgresql_where=sa.text("parent_execution_id IS NOT NULL"),
    )
    for column in STEP_COLUMNS:
        op.drop_column("execution_steps", column.name)
    for column in EXECUTION_COLUMNS:
        op.drop_column("executions", column.name)
