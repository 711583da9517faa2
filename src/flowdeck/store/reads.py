"""Reading executions: pages newest first, one execution whole, and what other processes recorded.
Rows become :mod:`flowdeck.records` here and nowhere else."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, select

from flowdeck.errors import ExecutionNotFound, InvalidQuery
from flowdeck.records import (
    Attempt,
    Client,
    Execution,
    ExecutionError,
    ExecutionPage,
    ExecutionSummary,
    Item,
    ParentRef,
    Remote,
    Step,
    StepChange,
)
from flowdeck.records import data_after as data_after_steps
from flowdeck.states import ErrorType, Status, StepStatus, Transport
from flowdeck.store.stats import like_pattern
from flowdeck.store.tables import execution_counts, execution_params, executions, steps
from flowdeck.store.values import decode_value, param_value
from flowdeck.times import duration_ms, iso, parse_iso, parse_iso_end

_STEPS_DONE = (
    select(func.count())
    .where(steps.c.execution_id == executions.c.id, steps.c.status != StepStatus.PENDING)
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
    executions.c.parent_execution_id,
    executions.c.rerun_of,
)
_STEP_STATE_COLUMNS = (
    steps.c.execution_id,
    steps.c.idx,
    steps.c.node_id,
    steps.c.node_type,
    steps.c.status,
    steps.c.started_at,
    steps.c.ended_at,
    steps.c.output_truncated,
    steps.c.error,
)


def _summary_fields(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "flow_id": row.flow_id,
        "flow_name": row.flow_name,
        "status": Status(row.status),
        "started_at": row.started_at,
        "ended_at": row.ended_at,
        "duration_ms": duration_ms(row.started_at, row.ended_at),
        "params_preview": row.params_preview,
        "steps_done": row.steps_done,
        "steps_total": row.steps_total,
        "error_type": None if row.error_type is None else ErrorType(row.error_type),
        "error_node_id": row.error_node_id,
        "parent_execution_id": row.parent_execution_id,
        "rerun_of": row.rerun_of,
    }


def _step_fields(row: Any) -> dict[str, Any]:
    return {
        "index": row.idx,
        "node_id": row.node_id,
        "node_type": row.node_type,
        "status": StepStatus(row.status),
        "started_at": row.started_at,
        "ended_at": row.ended_at,
        "duration_ms": duration_ms(row.started_at, row.ended_at),
        "output_truncated": bool(row.output_truncated),
        "error": row.error,
    }


_STEP_MORE_COLUMNS = (
    steps.c.output,
    steps.c.attempts,
    steps.c["items"],
    steps.c.child_execution_id,
    steps.c.remote,
)


def _step(row: Any) -> Step:
    """A step whole: its state, output, and what applies of its tries, items, child and remote call."""
    attempts, items, remote = (decode_value(row.attempts), decode_value(row.items), decode_value(row.remote))
    return Step(
        **_step_fields(row),
        output=decode_value(row.output),
        attempts=None if attempts is None else [_attempt(attempt) for attempt in attempts],
        child_execution_id=row.child_execution_id,
        items=None if items is None else [_item(item) for item in items],
        remote=None if remote is None else Remote(**remote),
    )


def _attempt(stored: dict[str, Any]) -> Attempt:
    return Attempt(**{**stored, "status": StepStatus(stored["status"])})


def _item(stored: dict[str, Any]) -> Item:
    started, ended = stored["started_at"], stored["ended_at"]
    return Item(
        **{**stored, "status": StepStatus(stored["status"])},
        duration_ms=None if started is None else duration_ms(started, ended),
    )


def count_executions(connection: Any, *, flow_id: str | None = None, status: Status | None = None) -> int:
    """Exact, from the counters the triggers keep: a few rows read, however many executions there are."""
    query = select(func.coalesce(func.sum(execution_counts.c.n), 0))
    if flow_id is not None:
        query = query.where(execution_counts.c.flow_id == flow_id)
    if status is not None:
        query = query.where(execution_counts.c.status == status)
    return int(connection.execute(query).scalar_one())


@dataclass(frozen=True, slots=True)
class Filter:
    """Which executions a list shows; every condition given must hold."""

    flow_id: str | None = None
    status: Status | None = None
    since: int | None = None  # started at or after (µs)
    until: int | None = None  # started at or before (µs; the end of the precision it was given in)
    params: tuple[tuple[str, str], ...] = ()  # top-level argument KEY equals VALUE (as param_value says)
    error_node_id: str | None = None
    error_type: ErrorType | None = None
    error_shape: str | None = None  # messages of this shape (numbers, ids, quoted values masked)

    @property
    def counted(self) -> bool:
        """Whether the kept counters give its total (a flow and a status, at most)."""
        return self == Filter(flow_id=self.flow_id, status=self.status)

    @classmethod
    def from_query(cls, query: Mapping[str, str], *, flow_id: str | None = None) -> Filter:
        """A filter from a URL's query or the like: ``status``, ``since``, ``until`` (ISO 8601, on the
        start), ``param.KEY=VALUE`` (any number), ``error_node_id``, ``error_type`` and ``error`` (a
        message shape, as grouped errors give it); an empty value is no condition."""
        given = {key: value for key, value in query.items() if value != ""}
        status = given.get("status")
        if status is not None and status not in _STATUSES:
            raise InvalidQuery(f"status must be one of {', '.join(Status)}, not {status!r}")
        error_type = given.get("error_type")
        if error_type is not None and error_type not in _ERROR_TYPES:
            raise InvalidQuery(f"error_type must be one of {', '.join(ErrorType)}, not {error_type!r}")
        return cls(
            flow_id=flow_id if flow_id is not None else given.get("flow_id"),
            status=None if status is None else Status(status),
            since=_time(given, "since"),
            until=_time(given, "until"),
            params=tuple(
                (key[len(PARAM_PREFIX) :], value)
                for key, value in given.items()
                if key.startswith(PARAM_PREFIX)
            ),
            error_node_id=given.get("error_node_id"),
            error_type=None if error_type is None else ErrorType(error_type),
            error_shape=given.get("error"),
        )

    def query(self) -> dict[str, str]:
        """The filter as a URL's query says it (but the flow, which the URL's path names)."""
        pairs = {
            "status": self.status,
            "since": iso(self.since),
            "until": iso(self.until),
            "error_node_id": self.error_node_id,
            "error_type": self.error_type,
            "error": self.error_shape,
        }
        found = {key: str(value) for key, value in pairs.items() if value is not None}
        found.update({f"{PARAM_PREFIX}{key}": value for key, value in self.params})
        return found


PARAM_PREFIX = "param."
_STATUSES = frozenset(Status)
_ERROR_TYPES = frozenset(ErrorType)


def _time(given: Mapping[str, str], name: str) -> int | None:
    text = given.get(name)
    if text is None:
        return None
    try:
        return parse_iso_end(text) if name == "until" else parse_iso(text)
    except ValueError:
        raise InvalidQuery(
            f"{name} must be a time in ISO 8601 (2026-11-30T14:02:11Z), not {text!r}"
        ) from None


# ids sort by time: an id range brackets a time range, within a margin for ids made just before
# the execution's start was stamped
_ID_MARGIN_MS = 1000


def _id_bound(us: int, *, upper: bool) -> str:
    ms = max(0, us // 1000 + (_ID_MARGIN_MS if upper else -_ID_MARGIN_MS))
    stamp = f"{ms:012x}"
    rest = "ffff-ffff-ffffffffffff" if upper else "0000-0000-000000000000"
    return f"{stamp[:8]}-{stamp[8:]}-{rest}"


def matching(where: Filter) -> tuple[Any, Any, list[Any]]:
    """The filter as a FROM, the id column its pages are read by, and its conditions.

    A flow's search by one argument and nothing else is read from the argument index alone: its
    count and its newest matches are one range of it, however many executions match. Any other
    filter reads the executions, joined to one range of that index per argument."""
    one_argument = Filter(flow_id=where.flow_id, params=where.params[:1])
    if where.flow_id is not None and len(where.params) == 1 and where == one_argument:
        (key, value), param = where.params[0], execution_params
        matching = [param.c.key == key, param.c.value == param_value(value), param.c.flow_id == where.flow_id]
        return param, param.c.execution_id, matching
    source: Any = executions
    conditions: list[Any] = []
    for n, (key, value) in enumerate(where.params):
        param = execution_params.alias(f"p{n}")
        source = source.join(param, param.c.execution_id == executions.c.id)
        conditions += [param.c.key == key, param.c.value == param_value(value)]
        if where.flow_id is not None:
            conditions.append(param.c.flow_id == where.flow_id)
    if where.flow_id is not None:
        conditions.append(executions.c.flow_id == where.flow_id)
    if where.status is not None:
        conditions.append(executions.c.status == where.status)
    if where.since is not None:
        conditions += [
            executions.c.id >= _id_bound(where.since, upper=False),
            executions.c.started_at >= where.since,
        ]
    if where.until is not None:
        conditions += [
            executions.c.id <= _id_bound(where.until, upper=True),
            executions.c.started_at <= where.until,
        ]
    if where.error_node_id is not None:
        conditions.append(executions.c.error_node_id == where.error_node_id)
    if where.error_type is not None:
        conditions.append(executions.c.error_type == where.error_type)
    if where.error_shape is not None:
        conditions.append(executions.c.error_message.like(like_pattern(where.error_shape), escape="\\"))
    return source, executions.c.id, conditions


def list_executions(
    db: Engine, where: Filter = Filter(), *, page: int = 1, per_page: int = 20
) -> ExecutionPage:
    """Page ``page`` of the executions ``where`` says, newest first.

    The page's ids come from indexes alone; a page in the older half is read from the oldest end
    (ascending, with the smaller offset), so the last page costs what the first does. The total of a
    flow (and a status) comes from the kept counters; of any other filter, from a count."""
    source, id_column, conditions = matching(where)
    offset = (page - 1) * per_page
    items: list[ExecutionSummary] = []
    with db.connect() as connection:
        if where.counted:
            total = count_executions(connection, flow_id=where.flow_id, status=where.status)
        else:
            total = int(
                connection.execute(select(func.count()).select_from(source).where(*conditions)).scalar_one()
            )
        if offset < total:
            ids = select(id_column).select_from(source).where(*conditions)
            if offset > total // 2:
                size = min(per_page, total - offset)
                ids = ids.order_by(id_column.asc()).limit(size).offset(total - offset - size)
            else:
                ids = ids.order_by(id_column.desc()).limit(per_page).offset(offset)
            query = (
                select(*_SUMMARY_COLUMNS)
                .where(executions.c.id.in_(ids.scalar_subquery()))
                .order_by(executions.c.id.desc())
            )
            items = [ExecutionSummary(**_summary_fields(row)) for row in connection.execute(query)]
    pages = max(1, math.ceil(total / per_page))
    return ExecutionPage(items=items, page=page, per_page=per_page, total=total, pages=pages)


def read_summaries(connection: Any, ids: list[str]) -> list[ExecutionSummary]:
    """The summaries of ``ids`` that exist, newest first."""
    query = select(*_SUMMARY_COLUMNS).where(executions.c.id.in_(ids)).order_by(executions.c.id.desc())
    return [ExecutionSummary(**_summary_fields(row)) for row in connection.execute(query)]


def get_execution(db: Engine, execution_id: str) -> Execution:
    """One execution with its steps in order."""
    with db.connect() as connection:
        found = read_executions(connection, [execution_id])
    if not found:
        raise ExecutionNotFound(f"no execution with id {execution_id!r}")
    return found[0]


_EXECUTION_COLUMNS = (
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
    executions.c.parent_node_id,
    executions.c.trace_id,
)


def read_executions(connection: Any, ids: list[str]) -> list[Execution]:
    """The executions of ``ids`` that exist, whole, in the order given: three queries however many."""
    query = select(*_EXECUTION_COLUMNS).where(executions.c.id.in_(ids))
    rows = {row.id: row for row in connection.execute(query)}
    steps_of: dict[str, list[Step]] = {execution_id: [] for execution_id in rows}
    for step_row in connection.execute(
        select(*_STEP_STATE_COLUMNS, *_STEP_MORE_COLUMNS)
        .where(steps.c.execution_id.in_(list(rows)))
        .order_by(steps.c.execution_id, steps.c.idx)
    ):
        steps_of[step_row.execution_id].append(_step(step_row))
    children_of: dict[str, list[ExecutionSummary]] = {execution_id: [] for execution_id in rows}
    for child in connection.execute(
        select(*_SUMMARY_COLUMNS)
        .where(executions.c.parent_execution_id.in_(list(rows)))
        .order_by(executions.c.id)
    ):
        children_of[child.parent_execution_id].append(ExecutionSummary(**_summary_fields(child)))
    return [
        _execution(rows[execution_id], steps_of[execution_id], children_of[execution_id])
        for execution_id in ids
        if execution_id in rows
    ]


def _execution(row: Any, step_records: list[Step], children: list[ExecutionSummary]) -> Execution:
    fields = _summary_fields(row)
    initial_params = decode_value(row.initial_params)
    arguments = initial_params if row.input is None else decode_value(row.input)
    if row.output is not None:
        output = decode_value(row.output)
    else:  # the output is the last fulfilled step's, unless the flow has an output template
        fulfilled = [step for step in step_records if step.status == StepStatus.FULFILLED]
        output = fulfilled[-1].output if fulfilled and fields["status"] == Status.FULFILLED else None
    error = None
    if fields["error_type"] is not None:
        error = ExecutionError(
            type=fields["error_type"], message=row.error_message, node_id=row.error_node_id
        )
    client = None
    if row.client_name is not None or row.client_version is not None:
        client = Client(name=row.client_name, version=row.client_version)
    return Execution(
        **fields,
        flow_revision=row.flow_revision,
        initial_params=initial_params,
        params_truncated=bool(row.params_truncated),
        data=data_after_steps(arguments, step_records, len(step_records) - 1),
        output=output,
        output_truncated=bool(row.output_truncated),
        error=error,
        steps=step_records,
        client=client,
        transport=Transport(row.transport),
        parent=_parent(row),
        trace_id=row.trace_id,
        children=children,
    )


def _parent(row: Any) -> ParentRef | None:
    if row.parent_execution_id is None:
        return None
    return ParentRef(execution_id=row.parent_execution_id, node_id=row.parent_node_id)


def execution_exists(db: Engine, execution_id: str) -> bool:
    with db.connect() as connection:
        found = connection.execute(select(executions.c.id).where(executions.c.id == execution_id)).first()
    return found is not None


@dataclass(slots=True)
class OthersChanges:
    """What :func:`changes_by_others` found."""

    last_id: str | None  # the newest execution id seen, whoever ran it
    summaries: list[ExecutionSummary]
    steps: list[StepChange]


def newest_execution_id(db: Engine) -> str | None:
    with db.connect() as connection:
        return connection.execute(select(func.max(executions.c.id))).scalar()


def changes_by_others(
    db: Engine, *, after_id: str | None, watched: Iterable[str], runner_id: str | None, limit: int = 500
) -> OthersChanges:
    """The executions other processes started after ``after_id`` (ids are time-ordered: an index range
    scan), and the state of those in ``watched``, with their steps: what live events need on SQLite,
    where no database notice tells one process what another recorded."""
    with db.connect() as connection:
        query = select(executions.c.id, executions.c.runner_id).order_by(executions.c.id).limit(limit)
        if after_id is not None:
            query = query.where(executions.c.id > after_id)
        new = connection.execute(query).all()
        last_id = new[-1].id if new else after_id
        ids = set(watched) | {row.id for row in new if row.runner_id != runner_id}
        if not ids:
            return OthersChanges(last_id, [], [])
        chosen = executions.c.id.in_(ids)
        summaries = [
            ExecutionSummary(**_summary_fields(row))
            for row in connection.execute(select(*_SUMMARY_COLUMNS).where(chosen))
        ]
        step_rows = connection.execute(
            select(*_STEP_STATE_COLUMNS)
            .where(steps.c.execution_id.in_(ids))
            .order_by(steps.c.execution_id, steps.c.idx)
        )
        changes = [StepChange(**_step_fields(row), execution_id=row.execution_id) for row in step_rows]
        return OthersChanges(last_id, summaries, changes)
