"""What can go wrong that a user must be told, as one hierarchy under :class:`FlowdeckError`.

The app turns each kind into its HTTP status (JSON under ``/api``, a page elsewhere) and the CLI
into one line on stderr; a message says what happened and, where it can, what to do.
"""

from __future__ import annotations

from dataclasses import dataclass


class FlowdeckError(Exception):
    """The root: anything flowdeck reports to a user rather than as an internal error."""


class NotFound(FlowdeckError):
    """No flow or execution with that id or name."""


class FlowNotFound(NotFound):
    pass


class ExecutionNotFound(NotFound):
    pass


class Conflict(FlowdeckError):
    """Asked of something whose state does not allow it; the message says why."""


class NameTaken(Conflict):
    """Another live flow already has that name."""


class ReadOnlyFlow(Conflict):
    """A flow made by flowdeck to serve a remote tool: it follows the remote, nobody edits it."""


class CannotRerun(Conflict):
    """An execution that can't be run again as it was: its arguments were stored redacted or cut,
    or its flow is deleted."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem of a flow, with its place (``nodes[1].config.url``; empty for the whole file)."""

    place: str
    message: str

    def __str__(self) -> str:
        return f"{self.place}: {self.message}" if self.place else self.message


class InvalidFile(FlowdeckError):
    """A file (or a body) that does not load; ``problems`` lists every one found, each with its place."""

    def __init__(self, source: str, problems: list[Problem], message: str | None = None) -> None:
        self.source = source
        self.problems = problems
        if message is None:
            lines = "\n".join(f"  {problem}" for problem in problems)
            message = f"{source}: {count(len(problems), 'problem')}:\n{lines}"
        super().__init__(message)


class InvalidFlow(InvalidFile):
    """A flow that does not load."""

    @classmethod
    def of_files(cls, errors: list[InvalidFlow]) -> InvalidFlow:
        """Several files with problems: the message lists each file's."""
        return cls(
            ", ".join(error.source for error in errors),
            [problem for error in errors for problem in error.problems],
            "\n".join(str(error) for error in errors),
        )


class InvalidServers(InvalidFile):
    """A servers file that does not load."""


class InvalidQuery(FlowdeckError):
    """A filter or a page asked for with a value that can't be used (a time that is not one, a status
    that does not exist); the message names the value."""


class DatabaseUnavailable(FlowdeckError):
    """The database can't be opened, migrated or reached; the message says what to do."""


class RecordingFailed(FlowdeckError):
    """An execution could not be recorded. ``ran`` is False when it failed at the start: then no
    node has run."""

    def __init__(self, message: str, *, ran: bool) -> None:
        super().__init__(message)
        self.ran = ran


class CallFailed(FlowdeckError):
    """A call to an MCP server could not be made: unreachable, refused, or no such tool."""


def count(n: int, noun: str) -> str:
    """``1 problem``, ``3 problems``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
