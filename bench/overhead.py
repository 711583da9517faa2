"""Tracking overhead: the same flows run tracked and with the null observer, interleaved in one run,
and the floor beside them: the statements flowdeck sent for one execution, replayed bare through the
same driver (two durable commits, spaced like the flow), so that the overhead reads against what the
database alone costs."""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import time
from collections.abc import Callable
from typing import Any

import psycopg

from flowdeck.engine import NullObserver, PreparedFlow, run_flow
from flowdeck.flowfiles import load_flow_text
from flowdeck.ids import new_id
from flowdeck.settings import Settings
from flowdeck.states import Status, Transport
from flowdeck.store import database
from flowdeck.store.flows import import_flow
from flowdeck.store.writes import SqliteWrites
from flowdeck.tracking import CallInfo, Tracker


def flow_of_ten(name: str, node: str) -> str:
    nodes = "\n".join(f"  - {{id: n{i}, type: {node}}}" for i in range(10))
    return f"name: {name}\ninput_schema: {{type: object}}\nnodes:\n{nodes}\n"


SLEEPY = flow_of_ten("bench_1ms", "delay, config: {seconds: 0.001}")
SLEEPIER = flow_of_ten("bench_10ms", "delay, config: {seconds: 0.01}")
TRANSFORM = flow_of_ten(
    "bench_transform", "transform, config: {value: {i: '{{ input.i }}', text: 'some output'}}"
)


async def _time(tracker: Tracker, flow: PreparedFlow, tracked: bool, i: int) -> float:
    started = time.perf_counter()
    if tracked:
        run = await tracker.run(flow, {"i": i}, CallInfo(Transport.CLI))
    else:
        run = await run_flow(flow, {"i": i}, NullObserver(), execution_id=new_id())
    elapsed = time.perf_counter() - started
    assert run.status == Status.FULFILLED, run.error
    return elapsed


async def measure_flow(tracker: Tracker, flow: PreparedFlow, rounds: int) -> tuple[float, float]:
    """Median seconds per execution, (tracked, not tracked), alternating so that noise hits both."""
    tracked: list[float] = []
    untracked: list[float] = []
    for i in range(min(rounds // 4, 20)):  # warm up both paths (a quarter of the rounds, at most 20)
        await _time(tracker, flow, True, i)
        await _time(tracker, flow, False, i)
    for i in range(rounds):
        first = i % 2 == 0
        a = await _time(tracker, flow, first, i)
        b = await _time(tracker, flow, not first, i)
        (tracked if first else untracked).append(a)
        (untracked if first else tracked).append(b)
    return statistics.median(tracked), statistics.median(untracked)


# The floor. What the writer asks of the driver for one execution is recorded (statements and their
# parameters, commit by commit). Replayed with a fresh execution id each round, they cost what the
# database costs for one execution, with none of flowdeck's work around them.

Commits = list[list[Any]]  # one list of statements per commit


class _Recording:
    """A sqlite3 connection that notes what it is asked to run, commit by commit."""

    def __init__(self, connection: sqlite3.Connection, seen: Commits) -> None:
        self._connection, self._seen = connection, seen

    def execute(self, sql: str, params: Any = ()) -> Any:
        self._seen[-1].append(("execute", sql, dict(params)))
        return self._connection.execute(sql, params)

    def executemany(self, sql: str, rows: Any) -> Any:
        rows = [dict(row) for row in rows]
        self._seen[-1].append(("executemany", sql, rows))
        return self._connection.executemany(sql, rows)

    def commit(self) -> None:
        self._connection.commit()
        self._seen.append([])

    def rollback(self) -> None:
        self._connection.rollback()


def _capture_sqlite() -> tuple[Callable[[], None], Callable[[], Commits]]:
    """Record what the writer asks of its sqlite3 connection."""
    seen: Commits = [[]]
    original = SqliteWrites.write

    def write(self: SqliteWrites, connection: sqlite3.Connection, batch: Any) -> None:
        original(self, _Recording(connection, seen), batch)  # type: ignore[arg-type]

    def start() -> None:
        seen[:] = [[]]
        SqliteWrites.write = write  # type: ignore[method-assign]

    def stop() -> Commits:
        SqliteWrites.write = original  # type: ignore[method-assign]
        return [statements for statements in seen if statements]

    return start, stop


def _capture_postgres() -> tuple[Callable[[], None], Callable[[], Commits]]:
    """Record what the writer's connection executes (each statement is one commit: autocommit)."""
    seen: list[list[Any]] = []
    original = psycopg.AsyncConnection.execute

    async def execute(self: Any, query: Any, params: Any = None, **options: Any) -> Any:
        seen.append([(query, list(params or ()))])
        return await original(self, query, params, **options)

    def start() -> None:
        seen.clear()
        psycopg.AsyncConnection.execute = execute  # type: ignore[method-assign]

    def stop() -> Commits:
        psycopg.AsyncConnection.execute = original  # type: ignore[method-assign]
        return list(seen)

    return start, stop


def _fresh(value: Any, old: str, new: str) -> Any:
    """``value`` with the execution id ``old`` as ``new`` (in a column's list too)."""
    if isinstance(value, list):
        return [_fresh(item, old, new) for item in value]
    return value.replace(old, new) if isinstance(value, str) else value


async def _pause(seconds: float) -> None:
    """The time between two replayed commits. The loop's sleep lasts at least a millisecond (its
    timeout is rounded up to one), which would leave the database idle longer than the flow does:
    a shorter pause is slept by the thread."""
    if seconds >= 0.002:
        await asyncio.sleep(seconds)
    else:
        time.sleep(seconds)  # noqa: ASYNC251 - nothing else runs in the replay


async def _floor_sqlite(path: str, commits: Commits, old_id: str, spacing_s: float, rounds: int) -> float:
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    times = []
    for _ in range(rounds):
        new = new_id()
        spent = 0.0
        for statements in commits:
            fresh = [
                (
                    how,
                    sql,
                    [_fresh_row(row, old_id, new) for row in params]
                    if how == "executemany"
                    else _fresh_row(params, old_id, new),
                )
                for how, sql, params in statements
            ]
            await _pause(spacing_s)
            started = time.perf_counter()
            for how, sql, params in fresh:
                getattr(connection, how)(sql, params)
            connection.commit()
            spent += time.perf_counter() - started
        times.append(spent)
    connection.close()
    return statistics.median(times)


def _fresh_row(row: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    return {key: _fresh(value, old, new) for key, value in row.items()}


async def _floor_postgres(url: str, commits: Commits, old_id: str, spacing_s: float, rounds: int) -> float:
    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    times = []
    raw = psycopg.AsyncRawCursor  # as the writer: statements with $1 placeholders
    connecting = psycopg.AsyncConnection.connect(conninfo, autocommit=True, cursor_factory=raw)
    async with await connecting as connection:
        for _ in range(rounds):
            new = new_id()
            spent = 0.0
            for statements in commits:
                await _pause(spacing_s)
                started = time.perf_counter()
                for query, params in statements:
                    await connection.execute(query, [_fresh(p, old_id, new) for p in params], prepare=True)
                spent += time.perf_counter() - started
            times.append(spent)
    return statistics.median(times)


async def floor_of(
    tracker: Tracker, flow: PreparedFlow, untracked_s: float, rounds: int, *, durable_only: bool = False
) -> tuple[float, int]:
    """What the database alone costs for one execution of ``flow``: the writer's statements for one,
    replayed bare ``rounds`` times, spread over the flow's untracked time as the writer spreads them.
    With ``durable_only``, only the two commits a call waits for (the ``pending`` row, the end): a
    long flow's step batches in between go while its nodes wait. Returns the median seconds and the
    number of commits."""
    sqlite = tracker.db.dialect.name == "sqlite"
    start, stop = _capture_sqlite() if sqlite else _capture_postgres()
    start()
    execution_id = new_id()
    await tracker.run(flow, {"i": 0}, CallInfo(Transport.CLI), execution_id=execution_id)
    commits = stop()
    if durable_only:
        commits = [commits[0], commits[-1]]
    spacing = untracked_s / max(1, len(commits) - 1)
    if sqlite:
        floor = await _floor_sqlite(tracker.db.url.database or "", commits, execution_id, spacing, rounds)
    else:
        url = tracker.db.url.render_as_string(hide_password=False)
        floor = await _floor_postgres(url, commits, execution_id, spacing, rounds)
    return floor, len(commits)


def prepared(url: str, texts: list[str]) -> tuple[Any, list[Any]]:
    """The database at ``url``, migrated, with these flows."""
    db = database.open_database(url)
    database.upgrade(db)
    return db, [import_flow(db, load_flow_text(text).model_dump(exclude_none=True))[0] for text in texts]


def overhead_rows(url: str, label: str, *, quick: bool) -> list[dict[str, Any]]:
    db, records = prepared(url, [SLEEPY, SLEEPIER, TRANSFORM])
    rounds = 300 if quick else 1200
    longer = 20 if quick else 120  # rounds of the 10 x 10 ms flow, 0.2 s each

    async def measure() -> dict[str, Any]:
        async with Tracker(db, Settings(database_url=url), kind="bench") as tracker:
            sleepy, sleepier, transform = (tracker.prepare(record) for record in records)
            found = {
                "1ms": await measure_flow(tracker, sleepy, rounds // 4),
                "10ms": await measure_flow(tracker, sleepier, longer),
                "transform": await measure_flow(tracker, transform, rounds),
            }
            floor, commits = await floor_of(tracker, sleepy, found["1ms"][1], rounds // 4)
            longer_floor, _ = await floor_of(tracker, sleepier, found["10ms"][1], longer, durable_only=True)
            transform_floor, _ = await floor_of(tracker, transform, found["transform"][1], rounds)
        assert commits == 2, f"one execution of the 10 x 1 ms flow is two commits, not {commits}"
        return {**found, "floor": floor, "longer_floor": longer_floor, "transform_floor": transform_floor}

    found = asyncio.run(measure())
    db.dispose()
    (slow_t, slow_u), (slower_t, slower_u), (fast_t, fast_u) = found["1ms"], found["10ms"], found["transform"]
    floor, longer_floor, transform_floor = found["floor"], found["longer_floor"], found["transform_floor"]
    return [
        {
            "name": f"overhead_ratio_10x1ms_{label}",
            "value": round(slow_t / slow_u, 3),
            "unit": "ratio",
            "note": f"10 delay nodes of 1 ms, median of {rounds // 4}: {slow_t * 1e3:.2f} ms tracked, "
            f"{slow_u * 1e3:.2f} ms not tracked",
        },
        {
            "name": f"overhead_ratio_floor_10x1ms_{label}",
            "value": round((slow_u + floor) / slow_u, 3),
            "unit": "ratio",
            "note": f"the lowest ratio the two durable commits allow: {slow_u * 1e3:.2f} ms not tracked "
            f"+ the floor, {floor * 1e6:.0f} µs",
        },
        {
            "name": f"overhead_ratio_10x10ms_{label}",
            "value": round(slower_t / slower_u, 3),
            "unit": "ratio",
            "note": f"10 delay nodes of 10 ms, median of {longer}: {slower_t * 1e3:.2f} ms tracked, "
            f"{slower_u * 1e3:.2f} ms not tracked",
        },
        {
            "name": f"overhead_ratio_floor_10x10ms_{label}",
            "value": round((slower_u + longer_floor) / slower_u, 3),
            "unit": "ratio",
            "note": f"the lowest ratio the two durable commits allow: {slower_u * 1e3:.2f} ms not tracked "
            f"+ the pending row's and the end's commits replayed bare {slower_u * 1e3:.0f} ms apart, "
            f"{longer_floor * 1e6:.0f} µs (median of {longer})",
        },
        {
            "name": f"commit_floor_us_{label}",
            "value": round(floor * 1e6, 1),
            "unit": "µs",
            "note": "the statements of one 10 x 1 ms execution replayed bare through the driver, two "
            f"commits {slow_u * 1e3:.1f} ms apart, median of {rounds // 4}",
        },
        {
            "name": f"overhead_vs_floor_{label}",
            "value": round((slow_t - slow_u) / floor, 3),
            "unit": "ratio",
            "note": f"10 x 1 ms: {(slow_t - slow_u) * 1e6:.0f} µs tracked - not tracked, over the floor "
            f"of {floor * 1e6:.0f} µs",
        },
        {
            "name": f"overhead_us_per_node_{label}",
            "value": round((fast_t - fast_u) / 10 * 1e6, 1),
            "unit": "µs",
            "note": f"10 transform nodes, median of {rounds}: {fast_t * 1e6:.0f} µs tracked, "
            f"{fast_u * 1e6:.0f} µs not tracked",
        },
        {
            "name": f"overhead_us_per_node_floor_{label}",
            "value": round(transform_floor / 10 * 1e6, 1),
            "unit": "µs",
            "note": f"the lowest the row above can read: the two commits of one execution of the 10 "
            f"transforms replayed bare, {transform_floor * 1e6:.0f} µs (median of {rounds}), over 10",
        },
    ]
