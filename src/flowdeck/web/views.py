"""What the templates show, computed once here: status words, relative times, chart geometry."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flowdeck.store.executions import iso
from flowdeck.store.stats import DAY_US, FlowStats

STATUS_TEXT = {
    "pending": "Pending - Execution in progress",
    "fulfilled": "Fulfilled - Completed successfully",
    "error": "Error - Execution failed",
}
STATUS_MARK = {"pending": "…", "fulfilled": "✓", "error": "✕"}
ERROR_TEXT = {
    "timeout": "timed out",
    "cancelled": "cancelled",
    "interrupted": "interrupted",
    "invalid_params": "invalid parameters",
    "internal": "internal error",
}


def status_text(status: str, error_type: str | None = None, node_id: str | None = None) -> str:
    """The meaning of a status circle, as its tooltip says it."""
    text = STATUS_TEXT.get(status, status)
    if status != "error" or error_type is None:
        return text
    if error_type == "node_error":
        return f"{text}: failed at node {node_id}" if node_id else f"{text}: a node failed"
    reason = ERROR_TEXT.get(error_type, error_type)
    return f"{text}: {reason}" + (f" at node {node_id}" if node_id and error_type != "invalid_params" else "")


def relative(us: int | None, now_us: int | None = None) -> str:
    if us is None:
        return ""
    seconds = ((now_us or time.time_ns() // 1000) - us) / 1_000_000
    if seconds < 45:
        return "just now"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now"


def exact(us: int | None) -> str:
    if us is None:
        return ""
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def duration(ms: float | None) -> str:
    if ms is None:
        return ""
    if ms < 1:
        return f"{ms * 1000:.0f} µs"
    if ms < 1000:
        return f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f} s"
    return f"{int(ms // 60_000)} min {ms % 60_000 / 1000:.0f} s"


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    label: str
    title: str
    segments: list[tuple[str, float, float]]  # status, y, height


def chart(stats: FlowStats, width: float = 280, height: float = 56) -> list[Bar]:
    """Bars of executions per day, stacked by status, scaled to the busiest day."""
    busiest = max((day.total for day in stats.days), default=0) or 1
    step = width / max(len(stats.days), 1)
    bars = []
    for index, day in enumerate(stats.days):
        y = height
        segments = []
        for status in ("fulfilled", "error", "pending"):
            n = day.counts.get(status, 0)
            if n:
                h = max(1.0, n / busiest * (height - 2))
                y -= h
                segments.append((status, round(y, 1), round(h, 1)))
        date = datetime.fromtimestamp(day.day * DAY_US / 1e6, UTC)
        parts = ", ".join(
            f"{day.counts.get(s, 0)} {s}" for s in ("fulfilled", "error", "pending") if day.counts.get(s)
        )
        title = f"{date:%b %d}: {day.total} executions" + (f" ({parts})" if parts else "")
        bars.append(Bar(round(index * step, 1), f"{date:%d}", title, segments))
    return bars


FILTERS = {"relative": relative, "exact": exact, "duration": duration, "pretty": pretty, "iso": iso}
GLOBALS = {"status_text": status_text, "STATUS_MARK": STATUS_MARK}
