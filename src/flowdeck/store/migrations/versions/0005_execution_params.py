"""execution params: each top-level argument of an execution, for the list's param filter

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# as flowdeck.store.values.param_value writes them (a migration keeps its own copy: it must not
# change when the code does)
MAX_VALUE_CHARS = 200
BATCH = 5000


def _value(value):  # type: ignore[no-untyped-def]
    import hashlib

    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if len(text) > MAX_VALUE_CHARS:
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return text


def upgrade() -> None:
    op.create_table(
        "execution_params",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.Column("execution_id", sa.String(length=36), nullable=False),
        sa.PrimaryKeyConstraint("key", "value", "execution_id", name=op.f("pk_execution_params")),
        sqlite_with_rowid=False,
    )
    connection = op.get_bind()
    executions = sa.table("executions", sa.column("id"), sa.column("initial_params"))
    params = sa.table("execution_params", sa.column("key"), sa.column("value"), sa.column("execution_id"))
    after = ""
    while True:
        rows = connection.execute(
            sa.select(executions.c.id, executions.c.initial_params)
            .where(executions.c.id > after)
            .order_by(executions.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        found = []
        for execution_id, text in rows:
            try:
                arguments = json.loads(text)
            except ValueError:
                continue
            if isinstance(arguments, dict) and "$truncated" not in arguments:
                found.extend(
                    {"key": str(key)[:MAX_VALUE_CHARS], "value": _value(value), "execution_id": execution_id}
                    for key, value in arguments.items()
                    if len(str(key)) <= MAX_VALUE_CHARS
                )
        if found:
            connection.execute(sa.insert(params), found)
        after = rows[-1].id


def downgrade() -> None:
    op.drop_table("execution_params")
