"""What the templates show, computed here: status words and marks, times, durations, JSON."""

from __future__ import annotations

import json
from typing import Any

from flowdeck.states import ErrorType, Status, StepStatus
from flowdeck.times import clock, duration_text, exact, iso, relative

STATUS_TEXT = {
    Status.PENDING: "Pending - Execution in progress",
    Status.FULFILLED: "Fulfilled - Completed successfully",
    Status.ERROR: "Error - Execution failed",
}
STATUS_MARK = {Status.PENDING: "…", Status.FULFILLED: "✓", Status.ERROR: "✕"}
ERROR_TEXT = {
    ErrorType.TIMEOUT: "timed out",
    ErrorType.CANCELLED: "cancelled",
    ErrorType.INTERRUPTED: "interrupted",
    ErrorType.INVALID_PARAMS: "invalid parameters",
    ErrorType.INTERNAL: "internal error",
}


def status_text(status: Status, error_type: ErrorType | None = None, node_id: str | None = None) -> str:
    """The meaning of a status circle, as its tooltip says it."""
    text = STATUS_TEXT.get(status, status)
    if status != Status.ERROR or error_type is None:
        return text
    if error_type == ErrorType.NODE_ERROR:
        return f"{text}: failed at node {node_id}" if node_id else f"{text}: a node failed"
    reason = ERROR_TEXT.get(error_type, error_type)
    where = f" at node {node_id}" if node_id and error_type != ErrorType.INVALID_PARAMS else ""
    return f"{text}: {reason}{where}"


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def utc_input(us: int | None) -> str:
    """A stored time as a datetime-local input shows it (UTC, to the second)."""
    text = iso(us)
    return "" if text is None else text[:19]


FILTERS = {
    "relative": relative,
    "exact": exact,
    "clock": clock,
    "duration": duration_text,
    "pretty": pretty,
    "iso": iso,
    "utc_input": utc_input,
}
GLOBALS = {
    "status_text": status_text,
    "STATUS_MARK": STATUS_MARK,
    "Status": Status,
    "StepStatus": StepStatus,
    "ErrorType": ErrorType,
}
