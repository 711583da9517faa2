"""The Usage tab's chart: executions per day, stacked by status, as SVG geometry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from flowdeck.states import Status
from flowdeck.store.stats import FlowStats
from flowdeck.times import DAY_US, SECOND_US

# bottom to top
STACK = (Status.FULFILLED, Status.ERROR, Status.PENDING)


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    label: str
    title: str
    segments: list[tuple[Status, float, float]]  # status, y, height


def chart(stats: FlowStats, width: float = 280, height: float = 56) -> list[Bar]:
    """Bars of executions per day, stacked by status, scaled to the busiest day."""
    busiest = max((day.total for day in stats.days), default=0) or 1
    step = width / max(len(stats.days), 1)
    bars = []
    for index, day in enumerate(stats.days):
        y = height
        segments = []
        for status in STACK:
            n = day.counts.get(status, 0)
            if n:
                h = max(1.0, n / busiest * (height - 2))
                y -= h
                segments.append((status, round(y, 1), round(h, 1)))
        date = datetime.fromtimestamp(day.day * DAY_US / SECOND_US, UTC)
        parts = ", ".join(f"{day.counts.get(s, 0)} {s}" for s in STACK if day.counts.get(s))
        title = f"{date:%b %d}: {day.total} executions" + (f" ({parts})" if parts else "")
        bars.append(Bar(round(index * step, 1), f"{date:%d}", title, segments))
    return bars
