"""A flow's numbers for its Usage tab: totals by status, durations of recent executions, and
executions per day. All from counters or a bounded read, whatever the size of the history."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine, select

from flowdeck.states import Status
from flowdeck.store.tables import execution_counts, execution_days, executions
from flowdeck.times import day, now_us

RECENT = 1000  # durations are of this many latest ended executions


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


def _percentile(sorted_values: list[int], fraction: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return round(sorted_values[index] / 1000, 1)


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
    return FlowStats(
        counts, _percentile(durations, 0.5), _percentile(durations, 0.95), list(per_day.values())
    )
