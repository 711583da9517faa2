"""Every execution a filter matches, newest first, as NDJSON (one whole Execution per line) or CSV
(one ExecutionSummary per row). Read in batches by id (each batch starts below the last id seen,
in a connection of its own), so that memory stays flat and no read holds the database, however
many executions there are."""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Iterable, Iterator
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine, select

from flowdeck.records import ExecutionSummary, dump_json, to_json
from flowdeck.store.json_lines import json_lines
from flowdeck.store.reads import Filter, matching, read_executions, read_summaries


class Format(StrEnum):
    NDJSON = "ndjson"
    CSV = "csv"


MEDIA_TYPES = {Format.NDJSON: "application/x-ndjson", Format.CSV: "text/csv; charset=utf-8"}
# whole executions carry their steps' outputs: fewer per batch than summaries
BATCH = {Format.NDJSON: 200, Format.CSV: 1000}
CSV_COLUMNS = [field.name for field in dataclasses.fields(ExecutionSummary)]


def export_executions(db: Engine, where: Filter, form: Format) -> Iterator[str]:
    """The export, in pieces of text to send or write as they come."""
    if form == Format.CSV:
        yield _csv_lines([CSV_COLUMNS])
    for ids in _batches(db, where, BATCH[form]):
        with db.connect() as connection:
            if form == Format.NDJSON:
                yield _ndjson(connection, ids)
            else:
                yield _csv_lines(_csv_values(summary) for summary in read_summaries(connection, ids))


def _ndjson(connection: Any, ids: list[str]) -> str:
    """Whole executions, one a line: written by the database where it can (:mod:`.json_lines`),
    else through the records."""
    lines = json_lines(connection, ids)
    rest = [execution_id for execution_id in ids if lines.get(execution_id) is None]
    if rest:
        lines.update((record.id, dump_json(record)) for record in read_executions(connection, rest))
    return "".join(lines[execution_id] + "\n" for execution_id in ids if lines.get(execution_id) is not None)


def _batches(db: Engine, where: Filter, size: int) -> Iterator[list[str]]:
    source, id_column, conditions = matching(where)
    last: str | None = None
    while True:
        query = select(id_column).select_from(source).where(*conditions)
        if last is not None:
            query = query.where(id_column < last)
        with db.connect() as connection:
            ids = list(connection.execute(query.order_by(id_column.desc()).limit(size)).scalars())
        if not ids:
            return
        yield ids
        last = ids[-1]


def _csv_values(summary: ExecutionSummary) -> list[object]:
    fields = to_json(summary)
    return ["" if fields[name] is None else fields[name] for name in CSV_COLUMNS]


def _csv_lines(rows: Iterable[list[object]]) -> str:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue()
