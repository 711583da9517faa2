"""The schema, as SQLAlchemy Core tables. Every change here comes with an Alembic migration.

Times are integers: microseconds since the Unix epoch, UTC. They are compact, sort and subtract
cheaply, and read the same on SQLite and PostgreSQL; the API turns them into ISO 8601.
JSON values are stored as text, serialized once by the writer, so that their size can be capped.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

from flowdeck.states import Status

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = String(36)  # a UUIDv7 in its canonical text form

flows = Table(
    "flows",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(64), nullable=False),
    Column("title", Text),
    Column("description", Text, nullable=False, server_default=""),
    Column("definition", Text, nullable=False),  # the FlowDefinition as JSON
    Column("revision", Integer, nullable=False, server_default="1"),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("deleted_at", BigInteger),
    # a flow made by flowdeck to serve a remote tool: {"server", "tool": the tool as listed}, as JSON
    Column("exposed", Text),
    # one live flow per name; deleted flows keep their name for their executions
    Index(
        "uq_flows_live_name",
        "name",
        unique=True,
        sqlite_where=text("deleted_at IS NULL"),
        postgresql_where=text("deleted_at IS NULL"),
    ),
)

executions = Table(
    "executions",
    metadata,
    Column("id", ID, primary_key=True),
    Column("flow_id", ID, nullable=False),
    Column("flow_name", String(64), nullable=False),
    Column("flow_revision", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("ended_at", BigInteger),
    Column("params_preview", Text, nullable=False),  # the first argument as "name: value", shortened
    Column("initial_params", Text, nullable=False),
    Column("input", Text),  # the arguments with schema defaults; NULL when equal to initial_params
    Column("params_truncated", Boolean, nullable=False, server_default=text("false")),
    Column("output", Text),  # NULL: the output is the last fulfilled step's output
    Column("output_truncated", Boolean, nullable=False, server_default=text("false")),
    Column("error_type", String(32)),
    Column("error_message", Text),
    Column("error_node_id", String(64)),
    Column("steps_total", Integer, nullable=False),
    Column("client_name", Text),
    Column("client_version", Text),
    Column("transport", String(16), nullable=False),
    Column("runner_id", ID, nullable=False),
    # a child execution's parent: the execution, and its node that started it
    Column("parent_execution_id", ID),
    Column("parent_node_id", String(64)),
    Column("rerun_of", ID),
    Column("trace_id", String(32)),
    # page N of one flow, newest first (ids sort by time), with and without a status filter
    Index("ix_executions_flow_id_id", "flow_id", "id"),
    Index("ix_executions_flow_id_status_id", "flow_id", "status", "id"),
    Index("ix_executions_status_id", "status", "id"),
    # recovery looks only at pending executions: this index holds nothing else
    # an execution's children, in start order; most executions have none
    Index(
        "ix_executions_children",
        "parent_execution_id",
        "id",
        sqlite_where=text("parent_execution_id IS NOT NULL"),
        postgresql_where=text("parent_execution_id IS NOT NULL"),
    ),
    Index(
        "ix_executions_pending_runner",
        "runner_id",
        sqlite_where=text(f"status = '{Status.PENDING}'"),
        postgresql_where=text(f"status = '{Status.PENDING}'"),
    ),
)

steps = Table(
    "execution_steps",
    metadata,
    Column("execution_id", ID, primary_key=True),
    Column("idx", Integer, primary_key=True),  # the step's index (a keyword in SQL)
    Column("node_id", String(64), nullable=False),
    Column("node_type", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("ended_at", BigInteger),
    Column("output", Text),
    Column("output_truncated", Boolean, nullable=False, server_default=text("false")),
    Column("error", Text),
    Column("attempts", Text),  # JSON: every try, when there was more than one
    Column("items", Text),  # JSON: a map's items, in order
    Column("child_execution_id", ID),  # a flow node's child execution
    Column("remote", Text),  # JSON: an mcp node's server, tool and the remote's execution id
    sqlite_with_rowid=False,
)

# How many executions each flow has in each status, kept exact by triggers on `executions` (see the
# migration): page numbers need a total, and counting a million rows per page view is too slow.
execution_counts = Table(
    "execution_counts",
    metadata,
    Column("flow_id", ID, primary_key=True),
    Column("status", String(16), primary_key=True),
    Column("n", BigInteger, nullable=False),
)

# Executions per flow, UTC day (days since the epoch) and status, kept by the same triggers: the
# Usage tab's chart of the last 14 days reads 42 rows, not the executions themselves.
execution_days = Table(
    "execution_days",
    metadata,
    Column("flow_id", ID, primary_key=True),
    Column("day", Integer, primary_key=True),
    Column("status", String(16), primary_key=True),
    Column("n", BigInteger, nullable=False),
)

# Each top-level argument of each execution, as text (a string as it is, anything else as its JSON
# text; a long one as its hash), with the execution's flow: a flow's argument search (its count and
# its newest matches) is read from this index alone.
execution_params = Table(
    "execution_params",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("value", String(200), primary_key=True),
    Column("flow_id", ID, primary_key=True),
    Column("execution_id", ID, primary_key=True),
    sqlite_with_rowid=False,
)

# Every revision of every flow, so that an execution's nodes are known by the revision it ran.
flow_revisions = Table(
    "flow_revisions",
    metadata,
    Column("flow_id", ID, primary_key=True),
    Column("revision", Integer, primary_key=True),
    Column("definition", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

runners = Table(
    "runners",
    metadata,
    Column("id", ID, primary_key=True),
    Column("kind", String(16), nullable=False),  # serve, mcp, cli: the command that runs flows
    Column("hostname", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("heartbeat_at", BigInteger, nullable=False),
    Column("stopped_at", BigInteger),
    # PostgreSQL: until when this server's watchers want every server's events (see events.hub)
    Column("watched_until", BigInteger),
)
