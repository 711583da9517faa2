"""One writer thread per database: it batches the tracking writes of all running executions.

Each batch is one transaction: execution inserts, then step upserts (a step's start and end that meet
in one batch become one row write), then final updates. A caller that must know its write is durable
(the ``pending`` row, the final state) waits on a future resolved after the commit; step writes are
not waited on, and a later final write of the same execution commits in the same or a later batch.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from sqlalchemy import Connection, Engine

from flowdeck.store.executions import finish_executions, insert_executions, upsert_steps

log = logging.getLogger("flowdeck.tracking")

EXECUTION, STEP, FINISH = "execution", "step", "finish"
_APPLY: dict[str, Callable[[Connection, Sequence[dict[str, Any]]], None]] = {
    EXECUTION: insert_executions,
    STEP: upsert_steps,
    FINISH: finish_executions,
}
_STOP = object()
MAX_BATCH = 1000

Op = tuple[str, dict[str, Any], "Future[None] | None"]


class WriterClosed(RuntimeError):
    """The writer was closed: nothing more can be recorded through it."""


class Writer:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._queue: queue.SimpleQueue[Op | object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="flowdeck-writer", daemon=True)
        self._closed = False
        self._thread.start()

    def write(self, kind: str, row: dict[str, Any]) -> None:
        """Queue a write nobody waits for."""
        if self._closed:
            raise WriterClosed("the execution writer is closed")
        self._queue.put((kind, row, None))

    def commit(self, kind: str, row: dict[str, Any]) -> Future[None]:
        """Queue a write; the future resolves once it is committed, or fails with the database's error."""
        if self._closed:
            raise WriterClosed("the execution writer is closed")
        future: Future[None] = Future()
        self._queue.put((kind, row, future))
        return future

    def close(self) -> None:
        """Write everything queued, then stop the thread."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
            self._thread.join()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            stop = item is _STOP
            batch: list[Op] = [] if stop else [item]  # type: ignore[list-item]
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                else:
                    batch.append(item)  # type: ignore[arg-type]
            if batch:
                self._write_batch(batch)
            if stop:
                return

    def _write_batch(self, batch: list[Op]) -> None:
        try:
            with self._engine.begin() as connection:
                self._apply(connection, batch)
        except Exception as exc:
            if len(batch) == 1:
                self._settle(batch, exc)
                return
            # find the bad write: the others still go through, each alone
            for op in batch:
                try:
                    with self._engine.begin() as connection:
                        self._apply(connection, [op])
                except Exception as alone:
                    self._settle([op], alone)
                else:
                    self._settle([op], None)
            return
        self._settle(batch, None)

    @staticmethod
    def _apply(connection: Connection, batch: list[Op]) -> None:
        grouped: dict[str, dict[Any, dict[str, Any]]] = {EXECUTION: {}, STEP: {}, FINISH: {}}
        for kind, row, _ in batch:
            key = (row["execution_id"], row["idx"]) if kind == STEP else row.get("id") or row["execution_id"]
            grouped[kind][key] = row  # for a step, the later state wins
        for kind, rows in grouped.items():
            if rows:
                _APPLY[kind](connection, list(rows.values()))

    @staticmethod
    def _settle(batch: list[Op], error: Exception | None) -> None:
        for kind, row, future in batch:
            if error is not None:
                log.error("could not record %s %s: %s", kind, row.get("execution_id") or row.get("id"), error)
            if future is not None and not future.done():
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)
