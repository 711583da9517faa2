"""A flow's numbers for its Usage tab: totals by status, durations of recent executions, executions
per day, and its insights (per node: runs, errors, durations; its errors grouped by shape). All
from counters or a bounded read, whatever the size of the history."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, Row, select

from flowdeck.records import ErrorGroup, Insights, NodeInsight
from flowdeck.states import ErrorType, Status, StepStatus
from flowdeck.store.tables import execution_counts, execution_days, executions, steps
from flowdeck.times import day, now_us

RECENT = 1000  # durations and insights are of this many latest executions (or of a chosen range)
RANGE_LIMIT = 10_000  # a chosen range is looked at up to this many of its latest executions

# what a message's shape masks: ids, quoted values, numbers (in this order)
_MASKS = (
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<id>"),
    (re.compile(r"'[^']*'"), "'…'"),
    (re.compile(r'"[^"]*"'), '"…"'),
    (re.compile(r"\b[0-9a-fA-F]{16,}\b"), "<id>"),
    (re.compile(r"\b\d+(?:\.\d+)?\b"), "<n>"),
)
_PLACEHOLDERS = re.compile(r"<id>|<n>|…")


@dataclass(slots=True)
class Day:
    day: int  # days since the Unix epoch, UTC
    counts: dict[Status, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(slots=True)
class FlowStats:
    counts: dict[Status, int]
    p50_ms: float | None
    p95_ms: float | None
    days: list[Day]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def success_rate(self) -> float | None:
        ended = self.counts.get(Status.FULFILLED, 0) + self.counts.get(Status.ERROR, 0)
        return None if ended == 0 else self.counts.get(Status.FULFILLED, 0) / ended


def percentile(sorted_us: list[int], fraction: float) -> float | None:
    """The nearest-rank percentile of durations in µs, in ms, exact to the µs (one execution of
    662 µs is 0.662 ms, not rounded into a bucket)."""
    if not sorted_us:
        return None
    index = min(len(sorted_us) - 1, max(0, math.ceil(fraction * len(sorted_us)) - 1))
    return sorted_us[index] / 1000


def error_shape(message: str) -> str:
    """A message with its numbers, ids and quoted values masked: errors that differ only in those
    are one group."""
    for pattern, placeholder in _MASKS:
        message = pattern.sub(placeholder, message)
    return message


def like_pattern(shape: str) -> str:
    """A LIKE pattern (``\\`` escapes) that matches the messages of a shape."""
    escaped = shape.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return _PLACEHOLDERS.sub("%", escaped)


def flow_stats(db: Engine, flow_id: str, *, days: int = 14) -> FlowStats:
    today = day(now_us())
    first = today - days + 1
    with db.connect() as connection:
        counts = {
            Status(row.status): int(row.n)
            for row in connection.execute(
                select(execution_counts.c.status, execution_counts.c.n).where(
                    execution_counts.c.flow_id == flow_id
                )
            )
            if row.n
        }
        per_day = {n: Day(n) for n in range(first, today + 1)}
        for row in connection.execute(
            select(execution_days.c.day, execution_days.c.status, execution_days.c.n).where(
                execution_days.c.flow_id == flow_id, execution_days.c.day >= first
            )
        ):
            if row.day in per_day and row.n:
                per_day[row.day].counts[Status(row.status)] = int(row.n)
        recent = (
            select(executions.c.id)
            .where(executions.c.flow_id == flow_id)
            .order_by(executions.c.id.desc())
            .limit(RECENT)
        )
        durations = sorted(
            row.ended_at - row.started_at
            for row in connection.execute(
                select(executions.c.started_at, executions.c.ended_at).where(
                    executions.c.id.in_(recent.scalar_subquery()), executions.c.ended_at.is_not(None)
                )
            )
        )
    return FlowStats(counts, percentile(durations, 0.5), percentile(durations, 0.95), list(per_day.values()))


def flow_insights(
    db: Engine, flow_id: str, *, since: int | None = None, until: int | None = None
) -> Insights:
    """Per node of the flow: how often it ran and failed, and how long it took (p50, p95); and its
    errors grouped by node, type and message shape, most frequent first. Over the latest
    executions (``RECENT``), or the latest ``RANGE_LIMIT`` that started within ``since``/``until``."""
    window = select(executions.c.id).where(executions.c.flow_id == flow_id)
    if since is not None:
        window = window.where(executions.c.started_at >= since)
    if until is not None:
        window = window.where(executions.c.started_at <= until)
    limit = RECENT if since is None and until is None else RANGE_LIMIT
    window = window.order_by(executions.c.id.desc()).limit(limit)
    with db.connect() as connection:
        ids = [row.id for row in connection.execute(window)]
        step_rows = connection.execute(
            select(
                steps.c.idx,
                steps.c.node_id,
                steps.c.node_type,
                steps.c.status,
                steps.c.started_at,
                steps.c.ended_at,
            ).where(steps.c.execution_id.in_(window.scalar_subquery()))
        ).all()
        failed = connection.execute(
            select(
                executions.c.id,
                executions.c.started_at,
                executions.c.error_node_id,
                executions.c.error_type,
                executions.c.error_message,
            ).where(executions.c.id.in_(window.scalar_subquery()), executions.c.status == Status.ERROR)
        ).all()
    return Insights(executions=len(ids), nodes=_node_insights(step_rows), errors=_error_groups(failed))


@dataclass(slots=True)
class _NodeRuns:
    node_type: str
    index: int
    runs: int = 0
    errors: int = 0
    took: list[int] = field(default_factory=list)


def _node_insights(rows: Sequence[Row[Any]]) -> list[NodeInsight]:
    """Ten thousand step rows, once each: unpacked as tuples (a row's attributes cost more)."""
    nodes: dict[str, _NodeRuns] = {}
    for index, node_id, node_type, status, started_at, ended_at in rows:
        node = nodes.get(node_id)
        if node is None:
            node = nodes[node_id] = _NodeRuns(node_type, index)
        elif index < node.index:
            node.index = index
        if status == StepStatus.FULFILLED or status == StepStatus.ERROR:
            node.runs += 1
            if status == StepStatus.ERROR:
                node.errors += 1
            if ended_at is not None:
                node.took.append(ended_at - started_at)
    insights = []
    for node_id, node in sorted(nodes.items(), key=lambda item: item[1].index):
        took = sorted(node.took)
        insights.append(
            NodeInsight(
                node_id=node_id,
                node_type=node.node_type,
                runs=node.runs,
                errors=node.errors,
                error_rate=node.errors / node.runs if node.runs else 0.0,
                p50_ms=percentile(took, 0.5),
                p95_ms=percentile(took, 0.95),
            )
        )
    return insights


def _error_groups(rows: Sequence[Row[Any]]) -> list[ErrorGroup]:
    groups: dict[tuple[str | None, str, str], ErrorGroup] = {}
    for row in sorted(rows, key=lambda r: r.id):
        key = (row.error_node_id, row.error_type, error_shape(row.error_message or ""))
        group = groups.get(key)
        if group is None:
            groups[key] = ErrorGroup(
                node_id=row.error_node_id,
                type=ErrorType(row.error_type),
                message=key[2],
                count=1,
                first_seen=row.started_at,
                last_seen=row.started_at,
                example_execution_id=row.id,
            )
        else:
            group.count += 1
            group.last_seen = max(group.last_seen, row.started_at)
            group.example_execution_id = row.id  # the latest: ids sort by time
    return sorted(groups.values(), key=lambda group: (-group.count, -group.last_seen))
