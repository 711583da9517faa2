"""Executions as JSON lines written by the database itself, for the export: the API's Execution,
built in one statement a batch from the stored text, on SQLite and on PostgreSQL.

Through the records, each of an execution's outputs is parsed and written out again in Python (and
a second time in the data after its last node): about 2,000 executions of ten steps a second. Here
the database joins text: an object in one ``printf`` (SQLite) or ``format`` (PostgreSQL), the
stored JSON values (written by the recorder, always valid JSON on one line) spliced in as they are,
never parsed, and any other value that could need escaping quoted by the database's JSON quoting.
On SQLite that is 54 µs a line, against 69 when SQLite's ``json_object`` built it (it parses every
stored value again). An execution whose steps carry tries, map items or a remote call, or that has
children, goes through the records as the API does (their stored times must become ISO 8601 inside
stored JSON). ``tests/test_operations`` checks that every line reads the same as
``GET /api/executions/{id}``, on both databases.

A batch comes back as one row, its lines joined, newest first: Python's ``sqlite3`` takes Python's
lock back at every row, and in a server another reader and the event loop hold it in between, so
a reader waited at each of 200 rows (two readers in one process: 18,600 to 21,500 lines a second
with a row a line, 22,000 to 24,900 with a row a batch). The ids of the lines come joined beside
them, in the same order: they show that the order is the batch's (SQLite's ``group_concat`` joins
in the order rows come, which its documentation does not promise) and which lines are missing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, text

from flowdeck.states import Status, StepStatus


@dataclass(frozen=True, slots=True)
class _Dialect:
    """What differs between the two databases' SQL for a line."""

    format: str  # the function that fills '%s' in a text with its arguments
    quote: str  # a value as JSON (a string quoted, NULL as SQL NULL or null)
    join: str  # an aggregate joining texts with commas, the steps in their order
    any: str  # an aggregate: whether any row's condition holds
    newest_first: str  # an aggregate joining texts with a separator, the executions newest first
    newline: str  # a line end


SQLITE = _Dialect(
    format="printf",
    quote="json_quote({})",
    join="group_concat({}) FILTER (WHERE {})",  # steps arrive in index order, their key's
    any="max({})",
    newest_first="group_concat({}, {})",  # in the order the rows come (checked by the ids)
    newline="char(10)",
)
POSTGRES = _Dialect(
    format="format",
    quote="coalesce(to_json({})::text, 'null')",
    join="string_agg({}, ',' ORDER BY s.idx) FILTER (WHERE {})",
    any="bool_or({})",
    newest_first="string_agg({}, {} ORDER BY id DESC)",
    newline="chr(10)",
)
_DIALECTS = {"sqlite": SQLITE, "postgresql": POSTGRES}


def iso_sql(column: str, dialect: str) -> str:
    """A stored time (µs) as ISO 8601 to the millisecond, ending in Z, as :func:`flowdeck.times.iso`
    writes it (truncated, not rounded); NULL stays NULL. On SQLite, whole milliseconds in seconds
    convert exactly, and one ``strftime`` is the cheapest of five ways measured (0.6 µs; a line
    holds 22 times)."""
    if dialect == "sqlite":
        return f"strftime('%Y-%m-%dT%H:%M:%fZ', ({column} / 1000) / 1000.0, 'unixepoch')"
    return (
        f"""to_char(timestamp 'epoch' + ({column} / 1000) * interval '1 millisecond',"""
        """ 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"""
    )


class _Plain(str):
    """SQL giving a text that is never NULL and holds nothing JSON escapes: an id, a state, a time."""


def _stored(expression: str) -> str:
    """A stored JSON value as it is; NULL as null."""
    return f"coalesce({expression}, 'null')"


def _bool(column: str) -> str:
    return f"CASE WHEN {column} THEN 'true' ELSE 'false' END"


def _duration(started: str, ended: str) -> str:
    """Milliseconds as a number (a double's text, which both write as JSON does); null while running."""
    return _stored(f"CAST(CAST(({ended} - {started}) / 1000.0 AS DOUBLE PRECISION) AS TEXT)")


def _or_null(condition: str, value: str) -> str:
    return f"CASE WHEN {condition} THEN 'null' ELSE {value} END"


_COUNTS_IN_DATA = (
    f"(s.status = '{StepStatus.FULFILLED}' OR (s.status = '{StepStatus.ERROR}' AND s.output IS NOT NULL))"
)
_OUTPUT = f"""CASE WHEN e.output IS NOT NULL THEN e.output
    WHEN e.status = '{Status.FULFILLED}' THEN (SELECT last.output FROM execution_steps last
        WHERE last.execution_id = e.id AND last.status = '{StepStatus.FULFILLED}'
        ORDER BY last.idx DESC LIMIT 1) END"""
# what a plain line can't say: tries, map items, remote calls (JSON holding stored times), children
_SPECIAL_STEP = "s.attempts IS NOT NULL OR s.items IS NOT NULL OR s.remote IS NOT NULL"
_HAS_CHILDREN = "EXISTS (SELECT 1 FROM executions c WHERE c.parent_execution_id = e.id)"


def _lines_query(dialect_name: str) -> str:
    """The statement giving the lines of the executions of ``:ids``, newest first, joined by line
    ends, and their ids joined by commas: each execution has a line, unless it must go through the
    records."""
    d = _DIALECTS[dialect_name]

    def obj(*pairs: tuple[str, str]) -> str:
        """A JSON object from ``(key, SQL giving the value's JSON text)``; no value may be NULL. A
        ``_Plain`` value is put between quotes as it is."""
        keys = ",".join(
            f'"{key}":"%s"' if isinstance(value, _Plain) else f'"{key}":%s' for key, value in pairs
        )
        return f"{d.format}('{{{keys}}}', " + ", ".join(value for _, value in pairs) + ")"

    def quoted(expression: str) -> str:
        return d.quote.format(expression)

    def state(alias: str) -> tuple[tuple[str, str], ...]:
        """What an execution and a step both say of their state, from the table named ``alias``."""
        return (
            ("status", _Plain(f"{alias}.status")),
            ("started_at", _Plain(iso_sql(f"{alias}.started_at", dialect_name))),  # never NULL
            ("ended_at", quoted(iso_sql(f"{alias}.ended_at", dialect_name))),
            ("duration_ms", _duration(f"{alias}.started_at", f"{alias}.ended_at")),
        )

    step_pairs = (
        ("index", "s.idx"),
        ("node_id", quoted("s.node_id")),
        ("node_type", quoted("s.node_type")),
        *state("s"),
        ("output_truncated", _bool("s.output_truncated")),
        ("error", quoted("s.error")),
        ("output", _stored("s.output")),
        ("data_after", "'null'"),
    )
    step = f"""CASE WHEN s.child_execution_id IS NULL THEN {obj(*step_pairs)}
        ELSE {obj(*step_pairs, ("child_execution_id", quoted("s.child_execution_id")))} END"""
    nodes = d.join.format(f"{quoted('s.node_id')} || ':' || {_stored('s.output')}", _COUNTS_IN_DATA)
    line = obj(
        ("id", _Plain("e.id")),
        ("flow_id", _Plain("e.flow_id")),
        ("flow_name", quoted("e.flow_name")),
        *state("e"),
        ("params_preview", quoted("e.params_preview")),
        ("steps_done", f"count(s.idx) FILTER (WHERE s.status != '{StepStatus.PENDING}')"),
        ("steps_total", "e.steps_total"),
        ("error_type", quoted("e.error_type")),
        ("error_node_id", quoted("e.error_node_id")),
        ("parent_execution_id", quoted("e.parent_execution_id")),
        ("rerun_of", quoted("e.rerun_of")),
        ("flow_revision", "e.flow_revision"),
        ("initial_params", "e.initial_params"),
        ("params_truncated", _bool("e.params_truncated")),
        (
            "data",
            obj(
                ("input", "coalesce(e.input, e.initial_params)"),
                ("nodes", f"'{{' || coalesce({nodes}, '') || '}}'"),
            ),
        ),
        ("output", _stored(_OUTPUT)),
        ("output_truncated", _bool("e.output_truncated")),
        (
            "error",
            _or_null(
                "e.error_type IS NULL",
                obj(
                    ("type", quoted("e.error_type")),
                    ("message", quoted("e.error_message")),
                    ("node_id", quoted("e.error_node_id")),
                ),
            ),
        ),
        ("steps", f"'[' || coalesce({d.join.format(step, 's.idx IS NOT NULL')}, '') || ']'"),
        (
            "client",
            _or_null(
                "e.client_name IS NULL AND e.client_version IS NULL",
                obj(("name", quoted("e.client_name")), ("version", quoted("e.client_version"))),
            ),
        ),
        ("transport", _Plain("e.transport")),
        (
            "parent",
            _or_null(
                "e.parent_execution_id IS NULL",
                obj(
                    ("execution_id", quoted("e.parent_execution_id")), ("node_id", quoted("e.parent_node_id"))
                ),
            ),
        ),
        ("trace_id", quoted("e.trace_id")),
        ("children", "'[]'"),
    )
    lines = (
        f"SELECT e.id AS id, CASE WHEN {d.any.format(_SPECIAL_STEP)} OR {_HAS_CHILDREN} THEN NULL"
        f" ELSE {line} END AS line"
        " FROM executions e LEFT JOIN execution_steps s ON s.execution_id = e.id"
        " WHERE e.id IN :ids GROUP BY e.id"
    )
    # one row for the batch: the ids that have a line, and their lines
    written = d.newest_first.format("CASE WHEN line IS NOT NULL THEN id END", "','")
    return (
        f"SELECT {written}, {d.newest_first.format('line', d.newline)}"
        f" FROM ({lines} ORDER BY e.id DESC) batch"
    )


@functools.cache
def _statement(dialect_name: str) -> Any:
    return text(_lines_query(dialect_name)).bindparams(bindparam("ids", expanding=True))


def json_lines(connection: Any, ids: list[str]) -> tuple[str | None, dict[str, str]]:
    """The JSON lines of ``ids`` (newest first, as an export reads them): all of them, each ending in
    a line end, when the database wrote one for each; else None, and the lines it wrote by id (the
    others must go through the records, or no longer exist)."""
    written, lines = connection.execute(_statement(connection.dialect.name), {"ids": ids}).one()
    if written is None:
        return None, {}
    if written == ",".join(ids):
        return lines + "\n", {}
    return None, dict(zip(written.split(","), lines.split("\n"), strict=True))
