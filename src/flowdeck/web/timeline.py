"""The detail panel's waterfall: one row per node of the flow on the execution's time axis (a bar
from its start to its end), with rows nested under it for its tries, a map's items and the child
execution it started, whose own nodes unfold in place. Nodes that did not run keep their row.

Everything comes from the record: the start and end of every step, try and item, and the
summaries of the children; a child started by a flow node is read whole, to unfold its nodes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flowdeck.records import Execution, ExecutionSummary, Item, Step
from flowdeck.states import Status, StepStatus
from flowdeck.times import duration_ms, now_us

# a map's items shown one by one; the rest are summed up in one row (the failed ones always shown)
ITEM_ROWS = 100
MIN_WIDTH = 0.6  # % of the axis: a bar too short to see is drawn this wide


@dataclass(slots=True)
class Axis:
    start: int
    span: int  # microseconds, at least 1

    def bar(self, started: int | None, ended: int | None) -> tuple[float, float]:
        """Left and width, in % of the axis."""
        if started is None:
            return 0.0, 0.0
        end = ended if ended is not None else now_us()
        width = min(100.0, max(MIN_WIDTH, (end - started) / self.span * 100))
        left = min(100.0 - width, max(0.0, (started - self.start) / self.span * 100))
        return round(left, 2), round(width, 2)


@dataclass(slots=True)
class Row:
    kind: str  # node, attempt, item, child, more
    node_id: str
    label: str
    status: str
    left: float = 0.0
    width: float = 0.0
    duration_ms: float | None = None
    error: str | None = None
    link: str | None = None  # a child execution's page
    rows: list[Row] = field(default_factory=list)


@dataclass(slots=True)
class NodeRow:
    """A node of the flow, with its step when it ran."""

    row: Row
    step: Step | None
    node_type: str


def axis_of(record: Execution | ExecutionSummary) -> Axis:
    ended = record.ended_at if record.ended_at is not None else now_us()
    return Axis(record.started_at, max(1, ended - record.started_at))


def timeline(
    record: Execution,
    nodes: list[dict[str, Any]] | None,
    read_child: Callable[[str], Execution | None],
    axis: Axis | None = None,
) -> list[NodeRow]:
    """The rows of ``record``: one per node of its flow revision (``nodes``; when unknown, one per
    step), nested rows under each; on its own time axis, or its parent's."""
    axis = axis or axis_of(record)
    steps = {step.node_id: step for step in record.steps}
    children = {child.id: child for child in record.children}
    listed = nodes if nodes is not None else [{"id": s.node_id, "type": s.node_type} for s in record.steps]
    rows = []
    for node in listed:
        step = steps.get(node["id"])
        if step is None:
            waiting = "waiting" if record.status == Status.PENDING else "not-run"
            rows.append(NodeRow(Row("node", node["id"], node["id"], waiting), None, node.get("type", "")))
            continue
        row = _step_row(step, axis)
        row.rows = _nested(step, axis, children, read_child)
        rows.append(NodeRow(row, step, step.node_type))
    return rows


def _step_row(step: Step, axis: Axis) -> Row:
    left, width = axis.bar(step.started_at, step.ended_at)
    return Row("node", step.node_id, step.node_id, step.status, left, width, step.duration_ms, step.error)


def _nested(
    step: Step,
    axis: Axis,
    children: dict[str, ExecutionSummary],
    read_child: Callable[[str], Execution | None],
) -> list[Row]:
    rows: list[Row] = []
    for number, attempt in enumerate(step.attempts or [], start=1):
        left, width = axis.bar(attempt.started_at, attempt.ended_at)
        took = duration_ms(attempt.started_at, attempt.ended_at)
        rows.append(
            Row("attempt", step.node_id, f"try {number}", attempt.status, left, width, took, attempt.error)
        )
    if step.items is not None:
        rows.extend(_item_rows(step, axis, children))
    if step.child_execution_id is not None:
        child = read_child(step.child_execution_id)
        if child is not None:
            row = _child_row(step.node_id, child, axis)
            row.rows = [nested.row for nested in timeline(child, None, lambda _: None, axis)]
            rows.append(row)
    return rows


def _item_rows(step: Step, axis: Axis, children: dict[str, ExecutionSummary]) -> list[Row]:
    items: list[Item] = step.items or []
    shown = items[:ITEM_ROWS] + [item for item in items[ITEM_ROWS:] if item.status == StepStatus.ERROR]
    rows = []
    for item in shown:
        left, width = axis.bar(item.started_at, item.ended_at)
        row = Row(
            "item", step.node_id, f"item {item.index}", item.status, left, width, item.duration_ms, item.error
        )
        child = children.get(item.child_execution_id or "")
        if child is not None:
            row.rows = [_child_row(step.node_id, child, axis)]
        rows.append(row)
    rest = [item for item in items[ITEM_ROWS:] if item.status != StepStatus.ERROR]
    if rest:
        counts: dict[str, int] = {}
        for item in rest:
            counts[item.status] = counts.get(item.status, 0) + 1
        told = ", ".join(f"{n} {status}" for status, n in counts.items())
        rows.append(Row("more", step.node_id, f"{len(rest)} more items ({told})", "more"))
    return rows


def _child_row(node_id: str, child: Execution | ExecutionSummary, axis: Axis) -> Row:
    left, width = axis.bar(child.started_at, child.ended_at)
    return Row(
        "child",
        node_id,
        child.flow_name,
        child.status,
        left,
        width,
        child.duration_ms,
        link=f"/executions/{child.id}",
    )
