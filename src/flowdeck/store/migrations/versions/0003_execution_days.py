"""executions per flow, day and status, kept by triggers

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

DAY_US = 86_400_000_000

SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER executions_day_insert AFTER INSERT ON executions BEGIN
        INSERT INTO execution_days (flow_id, day, status, n) VALUES (NEW.flow_id, NEW.started_at / {DAY_US}, NEW.status, 1)
        ON CONFLICT (flow_id, day, status) DO UPDATE SET n = n + 1;
    END""",
    f"""CREATE TRIGGER executions_day_update AFTER UPDATE OF status ON executions
    WHEN OLD.status IS NOT NEW.status BEGIN
        UPDATE execution_days SET n = n - 1
        WHERE flow_id = OLD.flow_id AND day = OLD.started_at / {DAY_US} AND status = OLD.status;
        INSERT INTO execution_days (flow_id, day, status, n) VALUES (NEW.flow_id, NEW.started_at / {DAY_US}, NEW.status, 1)
        ON CONFLICT (flow_id, day, status) DO UPDATE SET n = n + 1;
    END""",
    f"""CREATE TRIGGER executions_day_delete AFTER DELETE ON executions BEGIN
        UPDATE execution_days SET n = n - 1
        WHERE flow_id = OLD.flow_id AND day = OLD.started_at / {DAY_US} AND status = OLD.status;
    END""",
]

POSTGRES = [
    f"""CREATE FUNCTION flowdeck_count_days() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            UPDATE execution_days SET n = n - 1
            WHERE flow_id = OLD.flow_id AND day = OLD.started_at / {DAY_US} AND status = OLD.status;
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            INSERT INTO execution_days (flow_id, day, status, n)
            VALUES (NEW.flow_id, NEW.started_at / {DAY_US}, NEW.status, 1)
            ON CONFLICT (flow_id, day, status) DO UPDATE SET n = execution_days.n + 1;
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER executions_day_insert_delete AFTER INSERT OR DELETE ON executions
    FOR EACH ROW EXECUTE FUNCTION flowdeck_count_days()""",
    """CREATE TRIGGER executions_day_update AFTER UPDATE OF status ON executions
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION flowdeck_count_days()""",
]


def upgrade() -> None:
    op.create_table(
        "execution_days",
        sa.Column("flow_id", sa.String(length=36), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("flow_id", "day", "status", name=op.f("pk_execution_days")),
    )
    for statement in SQLITE_TRIGGERS if op.get_bind().dialect.name == "sqlite" else POSTGRES:
        op.execute(statement)
    op.execute(
        f"INSERT INTO execution_days (flow_id, day, status, n) SELECT flow_id, started_at / {DAY_US}, status, "
        f"count(*) FROM executions GROUP BY flow_id, started_at / {DAY_US}, status"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("executions_day_insert", "executions_day_update", "executions_day_delete"):
            op.execute(f"DROP TRIGGER {name}")
    else:
        op.execute("DROP TRIGGER executions_day_insert_delete ON executions")
        op.execute("DROP TRIGGER executions_day_update ON executions")
        op.execute("DROP FUNCTION flowdeck_count_days()")
    op.drop_table("execution_days")
