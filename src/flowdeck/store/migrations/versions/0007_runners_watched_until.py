"""runners watched_until: until when a server's watchers want every server's events (PostgreSQL)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runners", sa.Column("watched_until", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runners") as batch_op:
        batch_op.drop_column("watched_until")
