"""The states an execution and its steps go through, and the only moves between them.

Every other module names these members; no status or error type is spelled as a bare string
elsewhere (the migrations, which must not change with the code, excepted). A ``StrEnum`` member is
its own text, so it is stored, compared and sent as JSON unchanged.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """An execution's status."""

    PENDING = "pending"
    FULFILLED = "fulfilled"
    ERROR = "error"


class StepStatus(StrEnum):
    """A step's status: a node that did not run because its ``when`` was falsy is ``skipped``."""

    PENDING = "pending"
    FULFILLED = "fulfilled"
    ERROR = "error"
    SKIPPED = "skipped"


class ErrorType(StrEnum):
    """Why an execution ended in ``error``."""

    NODE_ERROR = "node_error"
    INVALID_PARAMS = "invalid_params"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    INTERNAL = "internal"


class Transport(StrEnum):
    """How a call reached flowdeck."""

    HTTP = "http"
    STDIO = "stdio"
    CLI = "cli"
    FLOW = "flow"  # a child execution, started by a flow node
    RERUN = "rerun"


# an execution in one of these never changes again
TERMINAL: frozenset[Status] = frozenset({Status.FULFILLED, Status.ERROR})
# the only moves: a pending execution ends, once. The writer's final update and recovery are both
# guarded by ``status = PENDING`` in SQL, so whichever comes second changes nothing.
TRANSITIONS: dict[Status, frozenset[Status]] = {Status.PENDING: TERMINAL}


def can_move(current: Status, target: Status) -> bool:
    """Whether an execution in ``current`` may become ``target``."""
    return target in TRANSITIONS.get(current, frozenset())
