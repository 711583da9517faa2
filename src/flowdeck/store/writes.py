"""The tracking writes: typed rows, and the statements that write a batch of them in one transaction
(new executions, step states, final states), on SQLite and on PostgreSQL.

The final update is guarded by ``status = PENDING`` (the only state an execution may leave, see
:data:`flowdeck.states.TRANSITIONS`), so an end never overwrites another, whichever comes first; so
is a step's: a step that has ended keeps its row, whatever batch lands after.
"""

from __future__ import annotations

import functools
import itertools
import sqlite3
from dataclasses import dataclass, field
from typing import Any, TypedDict

from sqlalchemy import bindparam, insert, literal_column, update
from sqlalchemy.dialects import sqlite

from flowdeck.states import ErrorType, Status, StepStatus, Transport
from flowdeck.store.tables import execution_params, executions, steps

EVENTS_CHANNEL = "flowdeck_events"  # PostgreSQL NOTIFY channel of execution events


class ExecutionRow(TypedDict):
    """A new execution, as its ``pending`` row."""

    id: str
    flow_id: str
    flow_name: str
    flow_revision: int
    status: Status
    started_at: int
    params_preview: str
    initial_params: str  # JSON text
    input: str | None  # JSON text; None when it equals initial_params
    params_truncated: bool
    steps_total: int
    client_name: str | None
    client_version: str | None
    transport: Transport
    runner_id: str
    parent_execution_id: str | None
    parent_node_id: str | None
    rerun_of: str | None
    trace_id: str | None


class StepRow(TypedDict):
    """A step's state; the later state of a step replaces the earlier one."""

    execution_id: str
    index: int
    node_id: str
    node_type: str
    status: StepStatus
    started_at: int
    ended_at: int | None
    output: str | None  # JSON text
    output_truncated: bool
    error: str | None
    attempts: str | None  # JSON texts, when they apply
    items: str | None
    child_execution_id: str | None
    remote: str | None


class ParamRow(TypedDict):
    """A top-level argument of a new execution, for the param filter."""

    execution_id: str
    flow_id: str
    key: str
    value: str


class FinishRow(TypedDict):
    """An execution's end."""

    execution_id: str
    status: Status
    ended_at: int
    output: str | None  # JSON text; None when the output is the last fulfilled step's
    output_truncated: bool
    error_type: ErrorType | None
    error_message: str | None
    error_node_id: str | None


EXECUTION_FIELDS = tuple(ExecutionRow.__annotations__)
STEP_FIELDS = tuple(StepRow.__annotations__)
PARAM_FIELDS = tuple(ParamRow.__annotations__)
FINISH_FIELDS = tuple(FinishRow.__annotations__)[1:]  # what an end sets, by execution_id
# what a step's later state changes: all but what names it and when it started
_STEP_KEPT = ("execution_id", "index", "node_id", "node_type", "started_at")
_STEP_UPDATES = tuple(name for name in STEP_FIELDS if name not in _STEP_KEPT)


def step_column(name: str) -> str:
    """The column a step row's field is stored in (``index`` is a keyword in SQL)."""
    return "idx" if name == "index" else name


@dataclass(slots=True)
class Batch:
    """Rows for one transaction: new executions and their arguments, step states (one per step),
    final states."""

    executions: list[ExecutionRow] = field(default_factory=list)
    params: list[ParamRow] = field(default_factory=list)
    steps: list[StepRow] = field(default_factory=list)
    finishes: list[FinishRow] = field(default_factory=list)


class SqliteWrites:
    """The tracking writes on a sqlite3 connection: statements compiled once by SQLAlchemy and run on
    the DBAPI cursor, since on this path SQLAlchemy's per-call work costs more than SQLite's own."""

    def __init__(self) -> None:
        dialect = sqlite.dialect(paramstyle="named")  # sqlite3 takes dicts with :name
        upsert = sqlite.insert(steps).values({steps.c[step_column(f)]: bindparam(f) for f in STEP_FIELDS})
        upsert = upsert.on_conflict_do_update(
            index_elements=[steps.c.execution_id, steps.c.idx],
            set_={name: upsert.excluded[name] for name in _STEP_UPDATES},
            where=steps.c.status == literal_column(f"'{StepStatus.PENDING}'"),
        )
        finish = (
            update(executions)
            .where(
                executions.c.id == bindparam("execution_id"),
                executions.c.status == literal_column(f"'{Status.PENDING}'"),
            )
            .values(**{name: bindparam(name) for name in FINISH_FIELDS})
        )
        self._insert = str(insert(executions).compile(dialect=dialect, column_keys=list(EXECUTION_FIELDS)))
        params = insert(execution_params).prefix_with("OR IGNORE")
        self._params = str(params.compile(dialect=dialect, column_keys=list(PARAM_FIELDS)))
        self._upsert = str(upsert.compile(dialect=dialect))
        self._finish = str(finish.compile(dialect=dialect))

    def write(self, connection: sqlite3.Connection, batch: Batch) -> None:
        """One transaction on a sqlite3 connection: new executions, then steps, then final states."""
        try:
            for sql, rows in (
                (self._insert, batch.executions),
                (self._params, batch.params),
                (self._upsert, batch.steps),
                (self._finish, batch.finishes),
            ):
                if len(rows) == 1:
                    connection.execute(sql, rows[0])
                elif rows:
                    connection.executemany(sql, rows)
            connection.commit()
        except BaseException:
            connection.rollback()
            raise


@functools.lru_cache(maxsize=256)
def postgres_batch_sql(
    n_executions: int, n_params: int, n_steps: int, n_finishes: int, n_notices: int = 0
) -> str:
    """One statement for a whole batch: on a network, each round trip costs more than the rows, so the
    inserts, the step upserts and the final updates go as data-modifying CTEs of a single statement
    (one round trip, one commit in autocommit mode). ``n_notices`` payloads follow as ``pg_notify``
    on the events channel: PostgreSQL delivers them when the statement commits, not before.

    Placeholders are PostgreSQL's own (``$1``), for a raw cursor: the driver sends the statement as it
    is, where its ``%s`` placeholders were parsed again in Python for every batch of more than 50
    values (a 10-step batch spent more there than in the database)."""
    numbers = itertools.count(1)

    def row(fields: tuple[str, ...], casts: dict[str, str]) -> str:
        return "(" + ", ".join(f"${next(numbers)}{casts.get(name, '')}" for name in fields) + ")"

    def rows(count: int, fields: tuple[str, ...], casts: dict[str, str]) -> str:
        return ", ".join(row(fields, casts) for _ in range(count))

    parts = []
    if n_executions:
        parts.append(
            f"INSERT INTO executions ({', '.join(EXECUTION_FIELDS)}) "
            f"VALUES {rows(n_executions, EXECUTION_FIELDS, _PG_CASTS)}"
        )
    if n_params:
        values = rows(n_params, PARAM_FIELDS, {})
        parts.append(
            f"INSERT INTO execution_params ({', '.join(PARAM_FIELDS)}) VALUES {values} ON CONFLICT DO NOTHING"
        )
    if n_steps:
        updates = ", ".join(f"{c} = excluded.{c}" for c in _STEP_UPDATES)
        columns = ", ".join(step_column(name) for name in STEP_FIELDS)
        parts.append(
            f"INSERT INTO execution_steps ({columns}) VALUES {rows(n_steps, STEP_FIELDS, _PG_CASTS)} "
            f"ON CONFLICT (execution_id, idx) DO UPDATE SET {updates} "
            f"WHERE execution_steps.status = '{StepStatus.PENDING}'"
        )
    if n_finishes:
        columns = ("execution_id", *FINISH_FIELDS)
        assignments = ", ".join(f"{c} = v.{c}" for c in FINISH_FIELDS)
        casts = {name: _PG_CASTS.get(name, "::text") for name in columns}
        parts.append(
            f"UPDATE executions SET {assignments} FROM (VALUES {rows(n_finishes, columns, casts)}) "
            f"AS v({', '.join(columns)}) "
            f"WHERE executions.id = v.execution_id AND executions.status = '{Status.PENDING}'"
        )
    if n_notices:
        notify = ", ".join(f"pg_notify('{EVENTS_CHANNEL}', ${next(numbers)})" for _ in range(n_notices))
        parts.append("SELECT " + notify)
    *ctes, main = parts
    if not ctes:
        return main
    return "WITH " + ", ".join(f"w{i} AS ({sql})" for i, sql in enumerate(ctes)) + " " + main


_PG_CASTS = {
    "flow_revision": "::integer",
    "steps_total": "::integer",
    "index": "::integer",
    "started_at": "::bigint",
    "ended_at": "::bigint",
    "params_truncated": "::boolean",
    "output_truncated": "::boolean",
}


def postgres_batch(batch: Batch, notices: list[str] | None = None) -> tuple[str, list[Any]]:
    """The statement of a batch (for a raw cursor) and its parameters."""
    notices = notices or []
    sql = postgres_batch_sql(
        len(batch.executions), len(batch.params), len(batch.steps), len(batch.finishes), len(notices)
    )
    params: list[Any] = []
    for execution in batch.executions:
        params.extend(execution[c] for c in EXECUTION_FIELDS)  # type: ignore[literal-required]
    for param in batch.params:
        params.extend(param[c] for c in PARAM_FIELDS)  # type: ignore[literal-required]
    for step in batch.steps:
        params.extend(step[c] for c in STEP_FIELDS)  # type: ignore[literal-required]
    for end in batch.finishes:
        params.append(end["execution_id"])
        params.extend(end[c] for c in FINISH_FIELDS)  # type: ignore[literal-required]
    params.extend(notices)
    return sql, params
