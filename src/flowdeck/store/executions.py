"""Execution rows: the statements the tracking writer batches, and the read side (pages, one execution).

Each step stores only its node's output; the data after node k is rebuilt as ``input`` plus the
outputs of nodes 0..k, so nothing is stored twice.
"""

from __future__ import annotations

import functools
import json
import math
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, func, insert, literal_column, select, update
from sqlalchemy.dialects import sqlite

from flowdeck.store.tables import execution_counts, executions, steps

STATUSES = ("pending", "fulfilled", "error")
EVENTS_CHANNEL = "flowdeck_events"  # PostgreSQL NOTIFY channel of execution events
PREVIEW_CHARS = 80


class ExecutionNotFound(LookupError):
    """No execution with that id."""


# ---- values --------------------------------------------------------------------------------------


def encode_value(value: Any, max_bytes: int) -> tuple[str, bool]:
    """JSON text of ``value``, or, when longer than ``max_bytes`` (or not storable at all), a marker that
    says what was cut."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_unknown)
    except (RecursionError, ValueError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        marker = {"$truncated": {"bytes": None, "max_bytes": max_bytes, "preview": f"not storable: {reason}"}}
        return json.dumps(marker), True
    size = len(text.encode("utf-8")) if len(text) * 4 > max_bytes else len(text)
    if size <= max_bytes:
        return text, False
    marker = {"$truncated": {"bytes": size, "max_bytes": max_bytes, "preview": text[:200]}}
    return json.dumps(marker, ensure_ascii=False, separators=(",", ":")), True


def _unknown(value: Any) -> str:
    return f"<{type(value).__name__}>"


def params_preview(params: Any) -> str:
    """The first argument as ``name: value``, shortened for one line of a list."""
    if not isinstance(params, dict) or not params:
        return ""
    name, value = next(iter(params.items()))
    try:
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=_unknown)
    except (RecursionError, ValueError):
        shown = "…"
    text = " ".join(f"{name}: {shown}".split())
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


# ---- writes (run by the tracking writer, many rows per transaction) --------------------------------

EXECUTION_COLUMNS = (
    "id", "flow_id", "flow_name", "flow_revision", "status", "started_at", "params_preview", "initial_params",
    "input", "params_truncated", "steps_total", "client_name", "client_version", "transport", "runner_id",
)  # fmt: skip
STEP_COLUMNS = (
    "execution_id", "idx", "node_id", "node_type", "status", "started_at", "ended_at", "output",
    "output_truncated", "error",
)  # fmt: skip
_STEP_UPDATES = ("status", "ended_at", "output", "output_truncated", "error")
FINISH_COLUMNS = (
    "status",
    "ended_at",
    "output",
    "output_truncated",
    "error_type",
    "error_message",
    "error_node_id",
)


class SqliteWrites:
    """The tracking writes on a sqlite3 connection: statements compiled once by SQLAlchemy and run on
    the DBAPI cursor, since on this path SQLAlchemy's per-call work costs more than SQLite's own."""

    def __init__(self) -> None:
        dialect = sqlite.dialect(paramstyle="named")  # sqlite3 takes dicts with :name
        upsert = sqlite.insert(steps)
        upsert = upsert.on_conflict_do_update(
            index_elements=[steps.c.execution_id, steps.c.idx],
            set_={name: upsert.excluded[name] for name in _STEP_UPDATES},
        )
        finish = (
            update(executions)
            .where(
                executions.c.id == bindparam("execution_id"),
                executions.c.status == literal_column("'pending'"),
            )
            .values(**{name: bindparam(name) for name in FINISH_COLUMNS})
        )
        self._insert = str(insert(executions).compile(dialect=dialect, column_keys=list(EXECUTION_COLUMNS)))
        self._upsert = str(upsert.compile(dialect=dialect, column_keys=list(STEP_COLUMNS)))
        self._finish = str(finish.compile(dialect=dialect))

    def write(self, connection: sqlite3.Connection, batch: Batch) -> None:
        """One transaction on a sqlite3 connection: new executions, then steps, then final states."""
        try:
            for sql, rows in (
                (self._insert, batch.executions),
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
def postgres_batch_sql(n_executions: int, n_steps: int, n_finishes: int, n_notices: int = 0) -> str:
    """One statement for a whole batch: on a network, each round trip costs more than the rows, so the
    inserts, the step upserts and the final updates go as data-modifying CTEs of a single statement
    (one round trip, one commit in autocommit mode). ``n_notices`` payloads follow as ``pg_notify``
    on the events channel: PostgreSQL delivers them when the statement commits, not before."""

    def rows(count: int, template: str) -> str:
        return ", ".join([template] * count)

    parts = []
    if n_executions:
        template = "(" + ", ".join(f"%s{_PG_CASTS.get(c, '')}" for c in EXECUTION_COLUMNS) + ")"
        parts.append(
            f"INSERT INTO executions ({', '.join(EXECUTION_COLUMNS)}) VALUES {rows(n_executions, template)}"
        )
    if n_steps:
        template = "(" + ", ".join(f"%s{_PG_CASTS.get(c, '')}" for c in STEP_COLUMNS) + ")"
        updates = ", ".join(f"{c} = excluded.{c}" for c in _STEP_UPDATES)
        parts.append(
            f"INSERT INTO execution_steps ({', '.join(STEP_COLUMNS)}) VALUES {rows(n_steps, template)} "
            f"ON CONFLICT (execution_id, idx) DO UPDATE SET {updates}"
        )
    if n_finishes:
        columns = ("execution_id", *FINISH_COLUMNS)
        template = "(" + ", ".join(f"%s{_PG_CASTS.get(c, '::text')}" for c in columns) + ")"
        assignments = ", ".join(f"{c} = v.{c}" for c in FINISH_COLUMNS)
        parts.append(
            f"UPDATE executions SET {assignments} FROM (VALUES {rows(n_finishes, template)}) "
            f"AS v({', '.join(columns)}) "
            "WHERE executions.id = v.execution_id AND executions.status = 'pending'"
        )
    if n_notices:
        parts.append("SELECT " + ", ".join([f"pg_notify('{EVENTS_CHANNEL}', %s)"] * n_notices))
    *ctes, main = parts
    if not ctes:
        return main
    return "WITH " + ", ".join(f"w{i} AS ({sql})" for i, sql in enumerate(ctes)) + " " + main


_PG_CASTS = {
    "flow_revision": "::integer",
    "steps_total": "::integer",
    "idx": "::integer",
    "started_at": "::bigint",
    "ended_at": "::bigint",
    "params_truncated": "::boolean",
    "output_truncated": "::boolean",
}


def postgres_batch_params(batch: Batch, notices: list[str] | None = None) -> list[Any]:
    params: list[Any] = []
    for row in batch.executions:
        params.extend(row[c] for c in EXECUTION_COLUMNS)
    for row in batch.steps:
        params.extend(row[c] for c in STEP_COLUMNS)
    for row in batch.finishes:
        params.append(row["execution_id"])
        params.extend(row[c] for c in FINISH_COLUMNS)
    params.extend(notices or ())
    return params


@dataclass(slots=True)
class Batch:
    """Rows for one transaction: new executions, step states (one per step), final states."""

    executions: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    finishes: list[dict[str, Any]] = field(default_factory=list)


# ---- reads ----------------------------------------------------------------------------------------


def iso(us: int | None) -> str | None:
    """Stored microseconds as ISO 8601 UTC ending in Z, to the millisecond."""
    if us is None:
        return None
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _duration_ms(started: int, ended: int | None) -> float | None:
    return None if ended is None else round((ended - started) / 1000, 3)


@dataclass(slots=True)
class ExecutionSummary:
    id: str
    flow_id: str
    flow_name: str
    status: str
    started_at: int
    ended_at: int | None
    params_preview: str
    steps_done: int
    steps_total: int
    error_type: str | None
    error_node_id: str | None

    @property
    def duration_ms(self) -> float | None:
        return _duration_ms(self.started_at, self.ended_at)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "flow_id": self.flow_id,
            "flow_name": self.flow_name,
            "status": self.status,
            "started_at": iso(self.started_at),
            "ended_at": iso(self.ended_at),
            "duration_ms": self.duration_ms,
            "params_preview": self.params_preview,
            "steps_done": self.steps_done,
            "steps_total": self.steps_total,
            "error_type": self.error_type,
            "error_node_id": self.error_node_id,
        }


@dataclass(slots=True)
class StepRecord:
    index: int
    node_id: str
    node_type: str
    status: str
    started_at: int
    ended_at: int | None
    output: Any
    output_truncated: bool
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "node_id": self.node_id,
            "node_type": self.node_type,
            "status": self.status,
            "started_at": iso(self.started_at),
            "ended_at": iso(self.ended_at),
            "duration_ms": _duration_ms(self.started_at, self.ended_at),
            "output": self.output,
            "output_truncated": self.output_truncated,
            "error": self.error,
        }


@dataclass(slots=True)
class ExecutionRecord:
    summary: ExecutionSummary
    flow_revision: int
    initial_params: Any
    input: Any
    params_truncated: bool
    output: Any
    output_truncated: bool
    error: dict[str, Any] | None
    client: dict[str, str | None] | None
    transport: str
    steps: list[StepRecord] = field(default_factory=list)

    def data_after(self, index: int) -> dict[str, Any]:
        """``{"input", "nodes"}`` as it stood after node ``index`` (-1: before any node)."""
        nodes = {
            step.node_id: step.output
            for step in self.steps
            if step.index <= index and step.status == "fulfilled"
        }
        return {"input": self.input, "nodes": nodes}

    @property
    def data(self) -> dict[str, Any]:
        return self.data_after(len(self.steps) - 1)

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.summary.as_dict(),
            "flow_revision": self.flow_revision,
            "initial_params": self.initial_params,
            "params_truncated": self.params_truncated,
            "data": self.data,
            "output": self.output,
            "output_truncated": self.output_truncated,
            "error": self.error,
            "steps": [step.as_dict() for step in self.steps],
            "client": self.client,
            "transport": self.transport,
        }


_STEPS_DONE = (
    select(func.count())
    .where(steps.c.execution_id == executions.c.id, steps.c.status != "pending")
    .scalar_subquery()
    .label("steps_done")
)
_SUMMARY_COLUMNS = (
    executions.c.id,
    executions.c.flow_id,
    executions.c.flow_name,
    executions.c.status,
    executions.c.started_at,
    executions.c.ended_at,
    executions.c.params_preview,
    _STEPS_DONE,
    executions.c.steps_total,
    executions.c.error_type,
    executions.c.error_node_id,
)


def _summary(row: Any) -> ExecutionSummary:
    return ExecutionSummary(*row[: len(_SUMMARY_COLUMNS)])


@dataclass(slots=True)
class Page:
    items: list[ExecutionSummary]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    def as_dict(self) -> dict[str, Any]:
        return {
            "items": [item.as_dict() for item in self.items],
            "page": self.page,
            "per_page": self.per_page,
            "total": self.total,
            "pages": self.pages,
        }


def count_executions(connection: Connection, *, flow_id: str | None = None, status: str | None = None) -> int:
    """Exact, from the counters the triggers keep: a few rows read, however many executions there are."""
    query = select(func.coalesce(func.sum(execution_counts.c.n), 0))
    if flow_id is not None:
        query = query.where(execution_counts.c.flow_id == flow_id)
    if status is not None:
        query = query.where(execution_counts.c.status == status)
    return int(connection.execute(query).scalar_one())


@dataclass(slots=True)
class OthersChanges:
    """What :func:`changes_by_others` found."""

    last_id: str | None  # the newest execution id seen, whoever ran it
    summaries: list[ExecutionSummary]
    steps: list[dict[str, Any]]  # as the writer's events carry them: the step row but its output


def newest_execution_id(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return connection.execute(select(func.max(executions.c.id))).scalar()


def changes_by_others(
    engine: Engine, *, after_id: str | None, watched: Iterable[str], runner_id: str | None, limit: int = 500
) -> OthersChanges:
    """The executions other processes started after ``after_id`` (ids are time-ordered: an index range
    scan), and the state of those in ``watched``, with their steps: what live events need on SQLite,
    where no database notice tells one process what another recorded."""
    with engine.connect() as connection:
        query = select(executions.c.id, executions.c.runner_id).order_by(executions.c.id).limit(limit)
        if after_id is not None:
            query = query.where(executions.c.id > after_id)
        new = connection.execute(query).all()
        last_id = new[-1].id if new else after_id
        ids = set(watched) | {row.id for row in new if row.runner_id != runner_id}
        if not ids:
            return OthersChanges(last_id, [], [])
        chosen = executions.c.id.in_(ids)
        summaries = [_summary(row) for row in connection.execute(select(*_SUMMARY_COLUMNS).where(chosen))]
        step_columns = [steps.c[name] for name in STEP_COLUMNS if name != "output"]
        step_rows = connection.execute(
            select(*step_columns)
            .where(steps.c.execution_id.in_(ids))
            .order_by(steps.c.execution_id, steps.c.idx)
        )
        return OthersChanges(last_id, summaries, [dict(row._mapping) for row in step_rows])


def list_executions(
    engine: Engine,
    *,
    flow_id: str | None = None,
    status: str | None = None,
    page: int = 1,
    per_page: int = 20,
) -> Page:
    """Page ``page`` of executions, newest first, of one flow or of all, optionally of one status.

    The page's ids come from an index alone; a page in the older half is read from the oldest end
    (ascending, with the smaller offset), so the last page costs what the first does."""
    conditions = []
    if flow_id is not None:
        conditions.append(executions.c.flow_id == flow_id)
    if status is not None:
        conditions.append(executions.c.status == status)
    offset = (page - 1) * per_page
    with engine.connect() as connection:
        total = count_executions(connection, flow_id=flow_id, status=status)
        if offset >= total:
            return Page([], page, per_page, total)
        ids = select(executions.c.id).where(*conditions)
        if offset > total // 2:
            size = min(per_page, total - offset)
            ids = ids.order_by(executions.c.id.asc()).limit(size).offset(total - offset - size)
        else:
            ids = ids.order_by(executions.c.id.desc()).limit(per_page).offset(offset)
        query = (
            select(*_SUMMARY_COLUMNS)
            .where(executions.c.id.in_(ids.scalar_subquery()))
            .order_by(executions.c.id.desc())
        )
        items = [_summary(row) for row in connection.execute(query)]
    return Page(items, page, per_page, total)


def get_execution(engine: Engine, execution_id: str) -> ExecutionRecord:
    """One execution with its steps in order."""
    with engine.connect() as connection:
        row = connection.execute(
            select(
                *_SUMMARY_COLUMNS,
                executions.c.flow_revision,
                executions.c.initial_params,
                executions.c.input,
                executions.c.params_truncated,
                executions.c.output,
                executions.c.output_truncated,
                executions.c.error_message,
                executions.c.client_name,
                executions.c.client_version,
                executions.c.transport,
            ).where(executions.c.id == execution_id)
        ).first()
        if row is None:
            raise ExecutionNotFound(f"no execution with id {execution_id!r}")
        step_rows = connection.execute(
            select(steps).where(steps.c.execution_id == execution_id).order_by(steps.c.idx)
        ).all()
    summary = _summary(row)
    step_records = [
        StepRecord(
            index=s.idx,
            node_id=s.node_id,
            node_type=s.node_type,
            status=s.status,
            started_at=s.started_at,
            ended_at=s.ended_at,
            output=json.loads(s.output) if s.output is not None else None,
            output_truncated=bool(s.output_truncated),
            error=s.error,
        )
        for s in step_rows
    ]
    initial_params = json.loads(row.initial_params)
    if row.output is not None:
        output = json.loads(row.output)
    else:
        fulfilled = [step for step in step_records if step.status == "fulfilled"]
        output = fulfilled[-1].output if fulfilled and summary.status == "fulfilled" else None
    error = None
    if summary.error_type is not None:
        error = {"type": summary.error_type, "message": row.error_message, "node_id": summary.error_node_id}
    client = None
    if row.client_name is not None or row.client_version is not None:
        client = {"name": row.client_name, "version": row.client_version}
    return ExecutionRecord(
        summary=summary,
        flow_revision=row.flow_revision,
        initial_params=initial_params,
        input=json.loads(row.input) if row.input is not None else initial_params,
        params_truncated=bool(row.params_truncated),
        output=output,
        output_truncated=bool(row.output_truncated),
        error=error,
        client=client,
        transport=row.transport,
        steps=step_records,
    )
