"""flows exposed: the remote tool a flow made by flowdeck serves (NULL for a flow someone wrote)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("flows", sa.Column("exposed", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("flows") as batch_op:
        batch_op.drop_column("exposed")
