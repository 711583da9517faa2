"""execution params by flow: each argument row names its execution's flow, so that a flow's argument
search (its matches, its count, its newest page) is read from the argument index alone

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _rebuild(columns: list[sa.Column], key: list[str], select: str) -> None:
    """execution_params again, with these columns and primary key, filled by ``select``."""
    op.create_table(
        "execution_params_next",
        *columns,
        sa.PrimaryKeyConstraint(*key, name="pk_execution_params_next"),
        sqlite_with_rowid=False,
    )
    op.execute(f"INSERT INTO execution_params_next ({', '.join(c.name for c in columns)}) {select}")
    op.drop_table("execution_params")
    op.rename_table("execution_params_next", "execution_params")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE execution_params RENAME CONSTRAINT pk_execution_params_next TO pk_execution_params"
        )


def upgrade() -> None:
    _rebuild(
        [
            sa.Column("key", sa.String(length=200), nullable=False),
            sa.Column("value", sa.String(length=200), nullable=False),
            sa.Column("flow_id", sa.String(length=36), nullable=False),
            sa.Column("execution_id", sa.String(length=36), nullable=False),
        ],
        ["key", "value", "flow_id", "execution_id"],
        "SELECT p.key, p.value, e.flow_id, p.execution_id"
        " FROM execution_params p JOIN executions e ON e.id = p.execution_id",
    )


def downgrade() -> None:
    _rebuild(
        [
            sa.Column("key", sa.String(length=200), nullable=False),
            sa.Column("value", sa.String(length=200), nullable=False),
            sa.Column("execution_id", sa.String(length=36), nullable=False),
        ],
        ["key", "value", "execution_id"],
        "SELECT key, value, execution_id FROM execution_params",
    )
