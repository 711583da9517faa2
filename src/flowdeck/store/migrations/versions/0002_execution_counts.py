"""execution counts per flow and status, kept by triggers

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SQLITE_TRIGGERS = [
    """CREATE TRIGGER executions_count_insert AFTER INSERT ON executions BEGIN
        INSERT INTO execution_counts (flow_id, status, n) VALUES (NEW.flow_id, NEW.status, 1)
        ON CONFLICT (flow_id, status) DO UPDATE SET n = n + 1;
    END""",
    """CREATE TRIGGER executions_count_update AFTER UPDATE OF status ON executions
    WHEN OLD.status IS NOT NEW.status BEGIN
        UPDATE execution_counts SET n = n - 1 WHERE flow_id = OLD.flow_id AND status = OLD.status;
        INSERT INTO execution_counts (flow_id, status, n) VALUES (NEW.flow_id, NEW.status, 1)
        ON CONFLICT (flow_id, status) DO UPDATE SET n = n + 1;
    END""",
    """CREATE TRIGGER executions_count_delete AFTER DELETE ON executions BEGIN
        UPDATE execution_counts SET n = n - 1 WHERE flow_id = OLD.flow_id AND status = OLD.status;
    END""",
]

POSTGRES_TRIGGER = [
    """CREATE FUNCTION flowdeck_count_executions() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            UPDATE execution_counts SET n = n - 1 WHERE flow_id = OLD.flow_id AND status = OLD.status;
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            INSERT INTO execution_counts (flow_id, status, n) VALUES (NEW.flow_id, NEW.status, 1)
            ON CONFLICT (flow_id, status) DO UPDATE SET n = execution_counts.n + 1;
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER executions_count_insert_delete AFTER INSERT OR DELETE ON executions
    FOR EACH ROW EXECUTE FUNCTION flowdeck_count_executions()""",
    """CREATE TRIGGER executions_count_update AFTER UPDATE OF status ON executions
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION flowdeck_count_executions()""",
]


def upgrade() -> None:
    op.create_table(
        "execution_counts",
        sa.Column("flow_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("flow_id", "status", name=op.f("pk_execution_counts")),
    )
    for statement in SQLITE_TRIGGERS if op.get_bind().dialect.name == "sqlite" else POSTGRES_TRIGGER:
        op.execute(statement)
    op.execute(
        "INSERT INTO execution_counts (flow_id, status, n) "
        "SELECT flow_id, status, count(*) FROM executions GROUP BY flow_id, status"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("executions_count_insert", "executions_count_update", "executions_count_delete"):
            op.execute(f"DROP TRIGGER {name}")
    else:
        op.execute("DROP TRIGGER executions_count_insert_delete ON executions")
        op.execute("DROP TRIGGER executions_count_update ON executions")
        op.execute("DROP FUNCTION flowdeck_count_executions()")
    op.drop_table("execution_counts")
