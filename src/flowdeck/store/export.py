"""Every execution a filter matches, newest first, as NDJSON (one whole Execution per line) or CSV
(one ExecutionSummary per row). Read in batches by id (each batch starts below the last id seen,
in a connection of its own), so that memory stays flat and no read holds the database, however
many executions there are.

NDJSON batches are read by two threads at once, each in its own connection, and sent in order:
building the lines is what an export spends its time on, the database does it (:mod:`.json_lines`)
outside Python's lock, and so the next batches are built while one is sent. Two, because more made
no gain on two cores, and an export should leave cores to the calls being served. On SQLite only
when its threads do run side by side (:mod:`.sqlite_library`). Otherwise, and for CSV (whose rows
Python makes, one thread at a time), one thread reads the next batch while one is sent.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine, select

from flowdeck.records import ExecutionSummary, dump_json, to_json
from flowdeck.store.database import is_sqlite
from flowdeck.store.json_lines import json_lines
from flowdeck.store.reads import Filter, matching, read_executions, read_summaries
from flowdeck.store.sqlite_library import threads_read_side_by_side


class Format(StrEnum):
    NDJSON = "ndjson"
    CSV = "csv"


MEDIA_TYPES = {Format.NDJSON: "application/x-ndjson", Format.CSV: "text/csv; charset=utf-8"}
# whole executions carry their steps' outputs: fewer per batch than summaries
BATCH = {Format.NDJSON: 200, Format.CSV: 1000}
READERS = 2  # batches read at once
CSV_COLUMNS = [field.name for field in dataclasses.fields(ExecutionSummary)]


def export_executions(db: Engine, where: Filter, form: Format) -> Iterator[str]:
    """The export, in pieces of text to send or write as they come."""
    if form == Format.CSV:
        yield _csv_lines([CSV_COLUMNS])
    read = functools.partial(_read, db, _ndjson if form == Format.NDJSON else _csv)
    readers = READERS if form == Format.NDJSON and _threads_read_at_once(db) else 1
    pool = ThreadPoolExecutor(readers, thread_name_prefix="flowdeck-export")
    ahead: deque[Future[str]] = deque()
    try:
        for ids in _batches(db, where, BATCH[form]):
            ahead.append(pool.submit(read, ids))
            if len(ahead) > readers:
                yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()
    finally:  # also when the reader of the export goes away: what was not started never will be
        pool.shutdown(cancel_futures=True)


def _threads_read_at_once(db: Engine) -> bool:
    return not is_sqlite(db) or threads_read_side_by_side()


def _read(db: Engine, text: Callable[[Any, list[str]], str], ids: list[str]) -> str:
    with db.connect() as connection:
        return text(connection, ids)


def _csv(connection: Any, ids: list[str]) -> str:
    return _csv_lines(_csv_values(summary) for summary in read_summaries(connection, ids))


def _ndjson(connection: Any, ids: list[str]) -> str:
    """Whole executions, one a line: written by the database where it can (:mod:`.json_lines`),
    else through the records."""
    whole, lines = json_lines(connection, ids)
    if whole is not None:
        return whole
    rest = [execution_id for execution_id in ids if execution_id not in lines]
    lines.update((record.id, dump_json(record)) for record in read_executions(connection, rest))
    return "".join(lines[execution_id] + "\n" for execution_id in ids if execution_id in lines)


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
