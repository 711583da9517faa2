"""Executions as JSON lines written by SQLite itself, for the export: the API's Execution, built in
one statement from the stored text.

Through the records, each of an execution's outputs is parsed and written out again in Python (and
a second time in the data after its last node): about 2,000 executions of ten steps a second. Here
SQLite joins text in C, an object in one ``printf``: the stored JSON values (written by the
recorder, always valid JSON on one line) go in as they are, never parsed, and any other value that
could need escaping goes through ``json_quote`` (19 % less time a line than building it with
``json_object``, which parses every stored value again). An execution whose steps carry tries, map
items or a remote call, or that has children, goes through the records as the API does (their
stored times must become ISO 8601 inside stored JSON).
``tests/test_operations`` checks that every line reads the same as ``GET /api/executions/{id}``.
"""

from __future__ import annotations

from typing import Any

from flowdeck.states import Status, StepStatus


def iso_sql(column: str) -> str:
    """A stored time (µs) as ISO 8601 to the millisecond, ending in Z, as :func:`flowdeck.times.iso`
    writes it (truncated, not rounded); NULL stays NULL. SQLite keeps times as integer
    milliseconds, so whole milliseconds in seconds convert exactly; one ``strftime`` is a third
    cheaper than a ``strftime`` and a ``printf``, and an export line holds 22 times."""
    return f"strftime('%Y-%m-%dT%H:%M:%fZ', ({column} / 1000) / 1000.0, 'unixepoch')"


class _Plain(str):
    """SQL giving a text that is never NULL and holds nothing JSON escapes: an id, a state, a time."""


def _object(*pairs: tuple[str, str]) -> str:
    """A JSON object from ``(key, SQL giving the value's JSON text)``, in one ``printf``; no value may
    be NULL. A value given as ``_Plain`` is a text that needs no escaping, put between quotes."""
    keys = ",".join(f'"{key}":"%s"' if isinstance(value, _Plain) else f'"{key}":%s' for key, value in pairs)
    return f"printf('{{{keys}}}', " + ", ".join(value for _, value in pairs) + ")"


def _text(expression: str) -> str:
    """A column as JSON: a string quoted, a number as it is, NULL as null."""
    return f"json_quote({expression})"


def _stored(expression: str) -> str:
    """A stored JSON value as it is; NULL as null."""
    return f"coalesce({expression}, 'null')"


def _bool(column: str) -> str:
    return f"CASE WHEN {column} THEN 'true' ELSE 'false' END"


def _time(column: str) -> str:
    return _text(iso_sql(column))


def _known_time(column: str) -> _Plain:
    """A time that is never NULL (a start), quoted by the ``printf`` without ``json_quote``."""
    return _Plain(iso_sql(column))


def _duration(started: str, ended: str) -> str:
    """Milliseconds as a number (SQLite writes a real as JSON does, ``%!.15g``); null while running."""
    return _stored(f"({ended} - {started}) / 1000.0")


def _or_null(condition: str, value: str) -> str:
    return f"CASE WHEN {condition} THEN 'null' ELSE {value} END"


_STEP_PAIRS = (
    ("index", "s.idx"),
    ("node_id", _text("s.node_id")),
    ("node_type", _text("s.node_type")),
    ("status", _Plain("s.status")),
    ("started_at", _known_time("s.started_at")),
    ("ended_at", _time("s.ended_at")),
    ("duration_ms", _duration("s.started_at", "s.ended_at")),
    ("output_truncated", _bool("s.output_truncated")),
    ("error", _text("s.error")),
    ("output", _stored("s.output")),
    ("data_after", "'null'"),
)
_STEP = f"""CASE WHEN s.child_execution_id IS NULL THEN {_object(*_STEP_PAIRS)}
    ELSE {_object(*_STEP_PAIRS, ("child_execution_id", _text("s.child_execution_id")))} END"""

_COUNTS_IN_DATA = (
    f"(s.status = '{StepStatus.FULFILLED}' OR (s.status = '{StepStatus.ERROR}' AND s.output IS NOT NULL))"
)
_OUTPUT = f"""CASE WHEN e.output IS NOT NULL THEN e.output
    WHEN e.status = '{Status.FULFILLED}' THEN (SELECT last.output FROM execution_steps last
        WHERE last.execution_id = e.id AND last.status = '{StepStatus.FULFILLED}'
        ORDER BY last.idx DESC LIMIT 1) END"""
_NODES = (
    f"group_concat({_text('s.node_id')} || ':' || {_stored('s.output')}) FILTER (WHERE {_COUNTS_IN_DATA})"
)

_LINE = _object(
    ("id", _Plain("e.id")),
    ("flow_id", _Plain("e.flow_id")),
    ("flow_name", _text("e.flow_name")),
    ("status", _Plain("e.status")),
    ("started_at", _known_time("e.started_at")),
    ("ended_at", _time("e.ended_at")),
    ("duration_ms", _duration("e.started_at", "e.ended_at")),
    ("params_preview", _text("e.params_preview")),
    ("steps_done", f"count(s.idx) FILTER (WHERE s.status != '{StepStatus.PENDING}')"),
    ("steps_total", "e.steps_total"),
    ("error_type", _text("e.error_type")),
    ("error_node_id", _text("e.error_node_id")),
    ("parent_execution_id", _text("e.parent_execution_id")),
    ("rerun_of", _text("e.rerun_of")),
    ("flow_revision", "e.flow_revision"),
    ("initial_params", "e.initial_params"),
    ("params_truncated", _bool("e.params_truncated")),
    (
        "data",
        _object(
            ("input", "coalesce(e.input, e.initial_params)"),
            ("nodes", f"'{{' || coalesce({_NODES}, '') || '}}'"),
        ),
    ),
    ("output", _stored(_OUTPUT)),
    ("output_truncated", _bool("e.output_truncated")),
    (
        "error",
        _or_null(
            "e.error_type IS NULL",
            _object(
                ("type", _text("e.error_type")),
                ("message", _text("e.error_message")),
                ("node_id", _text("e.error_node_id")),
            ),
        ),
    ),
    # steps arrive in index order, their key's, as the join reads them
    ("steps", f"'[' || coalesce(group_concat({_STEP}) FILTER (WHERE s.idx IS NOT NULL), '') || ']'"),
    (
        "client",
        _or_null(
            "e.client_name IS NULL AND e.client_version IS NULL",
            _object(("name", _text("e.client_name")), ("version", _text("e.client_version"))),
        ),
    ),
    ("transport", _Plain("e.transport")),
    (
        "parent",
        _or_null(
            "e.parent_execution_id IS NULL",
            _object(("execution_id", _text("e.parent_execution_id")), ("node_id", _text("e.parent_node_id"))),
        ),
    ),
    ("trace_id", _text("e.trace_id")),
    ("children", "'[]'"),
)

# what a plain line can't say: tries, map items, remote calls (JSON holding stored times), children
_SPECIAL = """max(s.attempts IS NOT NULL OR s.items IS NOT NULL OR s.remote IS NOT NULL)
    OR EXISTS (SELECT 1 FROM executions c WHERE c.parent_execution_id = e.id)"""


def sqlite_lines(connection: Any, ids: list[str]) -> dict[str, str | None]:
    """Each of ``ids`` that exists: its JSON line, or None when it must go through the records."""
    marks = ", ".join("?" * len(ids))
    query = (
        f"SELECT e.id, CASE WHEN {_SPECIAL} THEN NULL ELSE {_LINE} END"
        " FROM executions e LEFT JOIN execution_steps s ON s.execution_id = e.id"
        f" WHERE e.id IN ({marks}) GROUP BY e.id"
    )
    return dict(connection.exec_driver_sql(query, tuple(ids)).all())
