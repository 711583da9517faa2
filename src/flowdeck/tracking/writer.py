"""The writer: one per tracker, on the event loop that runs the flows. It batches the tracking writes
of every running execution into few transactions.

A write somebody waits for (the ``pending`` row, the final state) goes out at once, with every step
queued before it; step writes alone wait up to ``STEP_DELAY_S`` to share a transaction, so that a
running flow costs a few transactions rather than one per node (sending each step at once was
measured: on PostgreSQL it made a 10 x 1 ms flow 50 % slower, the loop busy with round trips).
Writes that arrive while a batch is being written go in the next one (group commit). A step's start
and end that meet in one batch are one row write.

On PostgreSQL, the batches of steps alone (a long flow's progress, every ``STEP_DELAY_S``) go
through a connection of their own, so that an execution's end never waits behind one in flight (a
round trip, over a millisecond on a connection that was idle). Step writes therefore never
overwrite a step that has ended: a batch that lands after a newer one changes nothing it shouldn't;
and its events, heard after the newer ones, are sent by the hubs with the newer state.

SQLite is written from the loop itself, by the task that commits: a commit in WAL mode takes tens
of microseconds, less than a hand-over to a thread or even to another task. That connection never
waits for a lock: when another process holds the database, the batch is handed to a thread that
waits up to the busy timeout, and the loop keeps serving. PostgreSQL is written through an
asynchronous psycopg connection, one statement and one round trip per batch
(:func:`~flowdeck.store.writes.postgres_batch`).

When the database is away (stopped, locked past the busy timeout, its disk full), a new execution
is refused (its ``pending`` row can't be written, so no node runs), while the steps and ends of the
executions already running are kept and written again every ``RETRY_S`` until the database is back.
If the process stops first, recovery marks those executions ``interrupted``.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import psycopg
from sqlalchemy import Engine

from flowdeck.events import Event, EventHub
from flowdeck.events.wire import notify_payloads
from flowdeck.store import database
from flowdeck.store.runners import WATCHED_UNTIL_SQL, WATCHING_CHANNEL, watched_until
from flowdeck.store.writes import (
    Batch,
    ExecutionRow,
    FinishRow,
    ParamRow,
    SqliteWrites,
    StepRow,
    postgres_batch,
)

log = logging.getLogger("flowdeck.tracking")

# what a write is: a new execution, one of its arguments, a step's state, an execution's end
EXECUTION, PARAM, STEP, FINISH = "execution", "param", "step", "finish"
# how long step writes may wait to share a transaction: well below what a person watching notices
STEP_DELAY_S = 0.05
MAX_BATCH = 2000
CONNECT_TIMEOUT_S = 5
# how often the writes kept while the database is away are tried again
RETRY_S = 1.0
CHECKPOINT_S = 0.5  # SQLite: how often the WAL is copied back into the database file

Row = ExecutionRow | ParamRow | StepRow | FinishRow
Op = tuple[str, Row, "asyncio.Future[None] | None"]


class StepSource(Protocol):
    """What queues steps whose rows are made when a batch is written (a recorder)."""

    def step_rows(self) -> list[StepRow]: ...


class WriterClosed(RuntimeError):
    """The writer was closed: nothing more can be recorded through it."""


def is_transient(exc: Exception) -> bool:
    """An error of the database's availability (a lock, a lost connection, a full disk), not of the
    rows: the same write may succeed later."""
    return isinstance(exc, sqlite3.OperationalError | psycopg.OperationalError)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class _Checkpoints:
    """Copies the WAL back into the database file every ``CHECKPOINT_S``, on a thread of its own: left
    to the writer's commits, every thousandth page of WAL made one commit copy them and sync the file
    (a 99th percentile of 5 ms on a 1-node call, the event loop stopped meanwhile)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flowdeck-checkpoints", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        connection = sqlite3.connect(self._path, timeout=database.SQLITE_BUSY_TIMEOUT_MS / 1000)
        try:
            while not self._stop.wait(CHECKPOINT_S):
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as exc:  # the next one tries again
                    log.warning("WAL checkpoint failed: %s", exc)
        finally:
            connection.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class _Sqlite:
    # writing at once, from the task that commits, costs less than a turn of the loop; the write
    # does not suspend unless the database is locked by another connection
    inline = True

    def __init__(self, db: Engine) -> None:
        self._db = db
        self._writes = SqliteWrites()
        self._connection: Any = None
        self._checkpoints: _Checkpoints | None = None

    async def open(self) -> None:
        """Connected at the first write; checkpoints start now."""
        path = self._db.url.database
        if path and path != ":memory:" and not path.startswith("file:"):
            self._checkpoints = _Checkpoints(path)

    async def write(self, batch: Batch, events: list[Event]) -> None:
        if self._connection is None:
            self._connection = self._db.raw_connection()
            self._connection.driver_connection.execute("PRAGMA busy_timeout=0")
            if self._checkpoints is not None:  # they run beside, not in a commit
                self._connection.driver_connection.execute("PRAGMA wal_autocheckpoint=0")
        connection = self._connection.driver_connection
        try:
            self._writes.write(connection, batch)
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise
            await asyncio.to_thread(self._write_waiting, connection, batch)

    def _write_waiting(self, connection: sqlite3.Connection, batch: Batch) -> None:
        """Off the loop: wait for the lock as long as any other connection would."""
        connection.execute(f"PRAGMA busy_timeout={database.SQLITE_BUSY_TIMEOUT_MS}")
        try:
            self._writes.write(connection, batch)
        finally:
            connection.execute("PRAGMA busy_timeout=0")

    async def close(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.close()
            self._checkpoints = None
        if self._connection is not None:  # back to the pool, as the others are
            self._connection.driver_connection.execute(
                f"PRAGMA busy_timeout={database.SQLITE_BUSY_TIMEOUT_MS}"
            )
            self._connection.driver_connection.execute("PRAGMA wal_autocheckpoint=1000")
            self._connection.close()
            self._connection = None


class _Postgres:
    inline = False

    def __init__(self, db: Engine, watched: Callable[[int], None]) -> None:
        self._conninfo = db.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._connection: psycopg.AsyncConnection[Any] | None = None
        self._watched = watched  # told until when some server's watchers want events

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        """A connection that also hears which servers are watched (with each statement's reply)."""
        connection = await psycopg.AsyncConnection.connect(
            self._conninfo,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_S,
            cursor_factory=psycopg.AsyncRawCursor,  # statements with $1 placeholders, sent as they are
        )
        connection.add_notify_handler(self._heard)
        await connection.execute(f"LISTEN {WATCHING_CHANNEL}")
        row = await (await connection.execute(WATCHED_UNTIL_SQL)).fetchone()
        self._watched(int(row[0]) if row else 0)
        return connection

    async def open(self) -> None:
        """Connect now; if the database is away, the first write tries again."""
        try:
            self._connection = await self._connect()
        except psycopg.OperationalError as exc:
            log.warning("the execution writer could not connect yet: %s", exc)

    def _heard(self, notice: psycopg.Notify) -> None:
        if notice.channel == WATCHING_CHANNEL:
            self._watched(watched_until(notice.payload))

    async def write(self, batch: Batch, events: list[Event]) -> None:
        """One statement: the writes, and the events as notices delivered when it commits."""
        if self._connection is None or self._connection.closed:
            self._connection = await self._connect()
        sql, params = postgres_batch(batch, notify_payloads(events))
        try:
            await self._connection.execute(sql, params, prepare=True)
        except psycopg.OperationalError:
            await self.close()  # the next batch connects afresh
            raise

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None


class Writer:
    """``hub`` gets the events of what was written, once it is committed (on PostgreSQL through the
    database, so that every server's hub gets them)."""

    def __init__(self, db: Engine, hub: EventHub) -> None:
        sqlite = db.dialect.name == "sqlite"
        self._backend = _Sqlite(db) if sqlite else _Postgres(db, hub.watched_elsewhere)
        # PostgreSQL: batches of steps alone go through a connection of their own (see above)
        self._step_backend = None if sqlite else _Postgres(db, hub.watched_elsewhere)
        self._step_task: asyncio.Task[None] | None = None
        self.hub = hub
        self._steps: dict[tuple[str, int], StepRow] = {}
        self._sources: list[StepSource] = []
        self._commits: list[Op] = []
        self._events: list[Event] = []
        self._ready = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._flushing = asyncio.Lock()
        # the writes of running executions that the database refused for a while: tried again
        self._kept_steps: dict[tuple[str, int], StepRow] = {}
        self._kept_finishes: list[FinishRow] = []
        self._away = False  # the database refused the last writes: said once in the log, not per try

    async def start(self) -> None:
        """Start writing, on the running event loop (on PostgreSQL, connected already: the first
        execution's events depend on what the connection hears)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="flowdeck-writer")
        await self._backend.open()

    def events_wanted(self) -> bool:
        """Whether the events of a write are worth building (somebody may watch); one not built is
        counted, so that a watcher reconnecting from before it is told to reload."""
        if self.hub.wanted:
            return True
        self.hub.skipped()
        return False

    def write_step(self, row: StepRow, *events: Event) -> None:
        """Queue a step write nobody waits for; the later state of a step replaces an unwritten one."""
        self._wait_for_batch()
        self._steps[(row["execution_id"], row["index"])] = row
        self._events.extend(events)

    def write_steps_later(self, source: StepSource) -> None:
        """Ask ``source`` for its changed steps' rows when the next batch is written (they replace
        the rows queued by :meth:`write_step`: they are newer)."""
        self._wait_for_batch()
        self._sources.append(source)

    def _wait_for_batch(self) -> None:
        if self._closed:
            raise WriterClosed("the execution writer is closed")
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(STEP_DELAY_S, self._steps_due)

    def _steps_due(self) -> None:
        """The step timer: the steps go with the next batch, or alone on their own connection."""
        self._timer = None
        if self._step_backend is None or self._commits or self.kept or self._closed:
            self._ready.set()
        elif self._step_task is None:
            self._step_task = asyncio.get_running_loop().create_task(self._write_steps())
        # else: a batch of steps is in flight; when it is written, it sets the timer again

    async def _write_steps(self) -> None:
        """Write the queued steps (and their events) alone, beside the batches of commits."""
        try:
            steps, events = self._take_steps(), self._events
            self._events = []
            if steps:
                await self._write([(STEP, row, None) for row in steps.values()], events, self._step_backend)
        finally:
            self._step_task = None
            if (self._steps or self._sources or self.kept) and self._timer is None and not self._closed:
                self._timer = asyncio.get_running_loop().call_later(STEP_DELAY_S, self._steps_due)

    def _take_steps(self) -> dict[tuple[str, int], StepRow]:
        """The queued steps' rows (the newest state of each), no longer queued."""
        steps, sources = self._steps, self._sources
        self._steps, self._sources = {}, []
        for source in sources:
            for row in source.step_rows():
                steps[(row["execution_id"], row["index"])] = row
        return steps

    async def start_execution(self, row: ExecutionRow, params: list[ParamRow], *events: Event) -> None:
        """Write a new execution's ``pending`` row (and its arguments for search) now and wait for
        the commit."""
        await self._commit(EXECUTION, row, events, [(PARAM, param, None) for param in params])

    async def finish_execution(self, row: FinishRow, *events: Event) -> None:
        """Write an execution's end now and wait for the commit."""
        await self._commit(FINISH, row, events)

    async def _commit(
        self, kind: str, row: Row, events: tuple[Event, ...], with_it: Sequence[Op] = ()
    ) -> None:
        """Write now (``with_it`` in the same transaction) and wait for the commit; raise the
        database's error if it fails. A caller that is cancelled while waiting does not stop the
        write."""
        if self._closed or self._task is None:
            raise WriterClosed("the execution writer is not running")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._commits.extend(with_it)
        self._commits.append((kind, row, future))
        self._events.extend(events)
        if self._backend.inline and not self._flushing.locked():
            await self._flush()
        else:  # a write is waiting for the database: this one goes in the next batch
            self._ready.set()
        await future  # cancelling this wait cancels the future, not the write

    async def close(self) -> None:
        """Write everything queued, then stop. What the database still refuses is left to recovery,
        which marks those executions ``interrupted``."""
        if self._task is not None and not self._closed:
            self._closed = True
            if self._step_task is not None:
                await self._step_task
            self._ready.set()
            await self._task
        await self._backend.close()
        if self._step_backend is not None:
            await self._step_backend.close()

    @property
    def waiting(self) -> int:
        """How many writes are not committed yet: queued, or kept while the database is away."""
        return len(self._steps) + len(self._sources) + len(self._commits) + self.kept

    @property
    def kept(self) -> int:
        """How many writes wait for the database to come back."""
        return len(self._kept_steps) + len(self._kept_finishes)

    async def _run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            await self._flush()
            if self._closed and not self._steps and not self._sources and not self._commits:
                if self.kept:
                    log.error("%d writes could not be recorded before stopping", self.kept)
                return

    async def _flush(self) -> None:
        """Write every queued step, then every queued commit."""
        async with self._flushing:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            steps = self._take_steps()
            commits = self._commits
            if self.kept:
                steps = {**self._kept_steps, **steps}
                commits = [(FINISH, row, None) for row in self._kept_finishes] + commits
                self._kept_steps, self._kept_finishes = {}, []
            self._commits = []
            events, self._events = self._events, []
            # an execution that ends in the batch that starts it (cancelled while its start was being
            # written) ends in a write of its own: one statement's update does not see its own insert
            late: list[Op] = []
            if len(commits) > 1:
                started = {row["id"] for kind, row, _ in commits if kind == EXECUTION}  # type: ignore[typeddict-item]
                late = [op for op in commits if op[0] == FINISH and op[1]["execution_id"] in started]  # type: ignore[typeddict-item]
                commits = [op for op in commits if op not in late]
            ops: list[Op] = [(STEP, row, None) for row in steps.values()] + commits if steps else commits
            for start in range(0, len(ops), MAX_BATCH):
                last = start + MAX_BATCH >= len(ops) and not late
                await self._write(ops[start : start + MAX_BATCH], events if last else [])
            if late:
                await self._write(late, events)
            if self.kept and not self._closed and self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(RETRY_S, self._ready.set)

    async def _write(
        self, ops: list[Op], events: list[Event], backend: _Sqlite | _Postgres | None = None
    ) -> None:
        backend = backend or self._backend
        try:
            await backend.write(_batch(ops), events)
        except Exception as exc:
            if is_transient(exc):  # the database is away: every write of this batch fails alike
                self._keep(ops, exc)
                return
            if len(ops) == 1:
                _settle(ops, exc)
                return
            # find the bad write: the others still go through, each alone (their events are dropped:
            # a watcher that missed one catches up at the execution's next event)
            for op in ops:
                try:
                    await backend.write(_batch([op]), [])
                except Exception as alone:
                    if is_transient(alone):
                        self._keep([op], alone)
                    else:
                        _settle([op], alone)
                else:
                    _settle([op], None)
            return
        _settle(ops, None)
        if self._away:
            self._away = False
            log.warning("the database is back: tracking writes go through again")
        if events and not self.hub.via_database:
            self.hub.dispatch(events)

    def _keep(self, ops: list[Op], error: Exception) -> None:
        """Keep the steps and ends of running executions to write them again; a new execution is
        refused (its caller gets the error and runs no node). Callers waiting for an end get the
        error now: the end is recorded later, when the database is back."""
        if not self._away:
            self._away = True
            log.error("the database refused the tracking writes, kept until it is back: %s", error)
        for kind, row, _ in ops:
            if kind == STEP:
                self._kept_steps.setdefault((row["execution_id"], row["index"]), row)  # type: ignore[typeddict-item]
            elif kind == FINISH:
                self._kept_finishes.append(row)  # type: ignore[arg-type]
        _settle([op for op in ops if op[0] == EXECUTION], error)
        _settle([op for op in ops if op[0] != EXECUTION], error, logged=False)


def _batch(ops: list[Op]) -> Batch:
    batch = Batch()
    target: dict[str, list[Any]] = {
        EXECUTION: batch.executions,
        PARAM: batch.params,
        STEP: batch.steps,
        FINISH: batch.finishes,
    }
    for kind, row, _ in ops:
        target[kind].append(row)
    return batch


def _settle(ops: list[Op], error: Exception | None, *, logged: bool = True) -> None:
    for kind, row, future in ops:
        if error is not None and logged:
            log.error("could not record %s %s: %s", kind, row.get("execution_id") or row.get("id"), error)
        if future is not None and not future.done():
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)
