"""Bulk-inserting realistic executions: for benchmarks, and for trying the UI at scale.

Each seeded execution has a step per node of the flow (ten generic ones for a flow without nodes) with
about 300 bytes of output each, mixed outcomes (mostly fulfilled, some failing at a random node, a
few timed out) and a start time spread over the last 14 days, with ids that sort by that time like
real ones.
"""

from __future__ import annotations

import json
import operator
import os
import random
import uuid
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine

from flowdeck.states import ErrorType, Status, StepStatus, Transport
from flowdeck.store.flows import FlowRecord
from flowdeck.store.values import param_pairs, params_preview
from flowdeck.store.writes import EXECUTION_FIELDS, FINISH_FIELDS, PARAM_FIELDS, STEP_FIELDS, step_column
from flowdeck.times import DAY_US, now_us

SEED_RUNNER = "00000000-0000-7000-8000-000000000000"
STEPS = 10
SPREAD_US = 14 * DAY_US
CHUNK = 2000
_ROW_COLUMNS = (*EXECUTION_FIELDS, *(name for name in FINISH_FIELDS if name not in EXECUTION_FIELDS))
_STEP_COLUMNS = tuple(step_column(name) for name in STEP_FIELDS)
# a row as the values of its table's columns, in order; what a seeded row leaves out (a parent, a
# step's tries...) is NULL
_EXECUTION_NULLS, _STEP_NULLS = dict.fromkeys(_ROW_COLUMNS), dict.fromkeys(STEP_FIELDS)
_execution_values, _step_values = operator.itemgetter(*_ROW_COLUMNS), operator.itemgetter(*STEP_FIELDS)


def uuid7_at(ms: int, counter: int) -> str:
    """A UUIDv7 for a given millisecond; ``counter`` (12 bits) orders ids within it."""
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (counter & 0xFFF) << 64 | 0b10 << 62
    value |= int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def _nodes(flow: FlowRecord) -> list[tuple[str, str]]:
    """The flow's own nodes (id, type), so that its seeded history reads like its own."""
    nodes = [(node["id"], node["type"]) for node in flow.definition.get("nodes") or []]
    return nodes or [(f"step_{index}", "transform" if index % 3 else "http") for index in range(STEPS)]


def _outputs(rng: random.Random, nodes: list[tuple[str, str]]) -> list[list[str]]:
    """A pool of outputs, about 300 bytes each, per node: varied enough to look real, made once."""
    pool = []
    for node_id, _ in nodes:
        variants = []
        for _ in range(32):
            value = {
                "node": node_id,
                "ok": True,
                "items": [
                    {"sku": f"SKU-{rng.randrange(10**6):06d}", "qty": rng.randrange(1, 9)} for _ in range(4)
                ],
                "note": "seeded output: " + "lorem ipsum dolor sit amet " * 4,
            }
            variants.append(json.dumps(value, separators=(",", ":")))
        pool.append(variants)
    return pool


def _rows(flow: FlowRecord, count: int, rng: random.Random) -> Iterator[tuple[list[tuple], ...]]:
    """For each execution, the rows of each table (its own, its arguments', its steps'), as the values
    of their columns."""
    nodes = _nodes(flow)
    outputs = _outputs(rng, nodes)
    start_us = now_us() - SPREAD_US
    gap_us = SPREAD_US / max(count, 1)
    last_ms, counter = -1, 0
    for n in range(count):
        started = int(start_us + n * gap_us)
        ms = started // 1000
        counter = counter + 1 if ms == last_ms else 0
        last_ms = ms
        execution_id = uuid7_at(ms, counter)
        roll = rng.random()
        failed_at = rng.randrange(len(nodes)) if roll < 0.12 else None
        timed_out = failed_at is None and roll < 0.14
        params = {
            "order_id": f"ord-{n:08d}",
            "customer": f"cust-{rng.randrange(10**5):05d}",
            "priority": rng.randrange(3),
        }
        at = started
        steps = []
        for index, (node_id, node_type) in enumerate(nodes):
            duration = 200 + int(rng.random() * 39_800)  # µs; a third of randrange's time
            error = None
            status = StepStatus.FULFILLED
            if index == failed_at:
                status, error = StepStatus.ERROR, f"upstream answered 502 at {node_id}"
            elif timed_out and index == len(nodes) - 1:
                status, error = StepStatus.ERROR, "timed out after 300 s"
            steps.append(
                {
                    **_STEP_NULLS,
                    "execution_id": execution_id,
                    "index": index,
                    "node_id": node_id,
                    "node_type": node_type,
                    "status": status,
                    "started_at": at,
                    "ended_at": at + duration,
                    "output": outputs[index][n % 32] if status == StepStatus.FULFILLED else None,
                    "output_truncated": False,
                    "error": error,
                }
            )
            at += duration
            if status == StepStatus.ERROR:
                break
        error_step = steps[-1] if steps[-1]["status"] == StepStatus.ERROR else None
        execution = {
            **_EXECUTION_NULLS,
            "id": execution_id,
            "flow_id": flow.id,
            "flow_name": flow.name,
            "flow_revision": flow.revision,
            "status": Status.ERROR if error_step else Status.FULFILLED,
            "started_at": started,
            "params_preview": params_preview(params),
            "initial_params": json.dumps(params, separators=(",", ":")),
            "input": None,
            "params_truncated": False,
            "steps_total": len(nodes),
            "client_name": rng.choice(["claude-desktop", "cursor", "mcp-inspector", "flowdeck-call"]),
            "client_version": "1.0",
            "transport": rng.choice([Transport.HTTP, Transport.STDIO]),
            "runner_id": SEED_RUNNER,
            "ended_at": at,
            "output": None,
            "output_truncated": False,
            "error_type": (ErrorType.TIMEOUT if timed_out else ErrorType.NODE_ERROR) if error_step else None,
            "error_message": error_step["error"] if error_step else None,
            "error_node_id": error_step["node_id"] if error_step else None,
        }
        param_rows = [(execution_id, flow.id, key, value) for key, value in param_pairs(params)]
        yield [_execution_values(execution)], param_rows, [_step_values(step) for step in steps]


def seed_executions(db: Engine, flow: FlowRecord, count: int, *, seed: int = 1, analyze: bool = True) -> int:
    """Insert ``count`` executions of ``flow``; returns how many. Chunks of a few thousand per
    transaction; PostgreSQL takes the rows by COPY (its triggers fire as for inserts). Then fresh
    statistics, so that the planner knows the tables just grew (autovacuum would, later): on a large
    SQLite database ``ANALYZE`` takes about a second, which one seeding many flows pays once
    (``analyze=False``, then :func:`refresh_statistics`)."""
    rng = random.Random(seed)
    tables = (
        ("executions", _ROW_COLUMNS),
        ("execution_params", PARAM_FIELDS),
        ("execution_steps", _STEP_COLUMNS),
    )
    connection = db.raw_connection()
    try:
        cursor = connection.cursor()
        write = _copy if db.dialect.name == "postgresql" else _insert
        done = 0
        rows = _rows(flow, count, rng)
        while done < count:
            chunk = [next(rows) for _ in range(min(CHUNK, count - done))]
            for position, (table, columns) in enumerate(tables):
                values = [row for tables_rows in chunk for row in tables_rows[position]]
                write(cursor, table, columns, values)
            connection.commit()
            done += len(chunk)
        cursor.close()
    finally:
        connection.close()
    if analyze:
        refresh_statistics(db)
    return count


def refresh_statistics(db: Engine) -> None:
    """The planner's statistics of the tables seeding fills."""
    with db.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        if db.dialect.name == "postgresql":
            connection.exec_driver_sql("ANALYZE executions, execution_params")
        else:
            connection.exec_driver_sql("ANALYZE")


def _insert(cursor: Any, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    marks = ", ".join("?" * len(columns))
    cursor.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


def _copy(cursor: Any, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
