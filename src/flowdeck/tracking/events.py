"""Execution events, pushed to whoever watches: the start of an execution, each node as it starts and
ends, the end. They are published once their writes are committed, so a watcher that reads the
database on an event finds what the event announced.

With SQLite the writer hands them to the hub directly, and while somebody watches, the hub looks
every ``POLL_S`` for what other processes record in the same file (a ``flowdeck mcp`` for a desktop
client, a ``flowdeck flows run``). With PostgreSQL the writer sends them with the batch
(``pg_notify`` in the same statement, delivered at its commit) and every server's hub listens
(``LISTEN``), so a browser on one server sees what runs on another.

Each hub numbers the events it dispatches and keeps the latest ones: a watcher that reconnects with
the id of the last event it saw gets what it missed, or is told to reload when the hub can't know.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import Engine

from flowdeck.store.executions import EVENTS_CHANNEL, changes_by_others, newest_execution_id

log = logging.getLogger("flowdeck.events")

KEEP = 4096  # events kept for watchers that reconnect
QUEUE = 2048  # events a slow watcher may fall behind before it is told to reload
RECONNECT_S = 1.0
RECONNECT_GRACE_S = 120.0  # events are kept this long after the last watcher left
POLL_S = 0.5  # SQLite: how often a watched hub looks for what other processes recorded

Event = dict[str, Any]  # {"type": "execution" | "step", "flow_id", "execution_id", "data": {...}}


def event(kind: str, flow_id: str, execution_id: str, data: dict[str, Any]) -> Event:
    """An ``execution`` event (``data``: the summary) or a ``step`` event (the step but its output)."""
    return {"type": kind, "flow_id": flow_id, "execution_id": execution_id, "data": data}


@dataclass(frozen=True, slots=True)
class Delivered:
    """An event as a watcher gets it; ``type == "reload"`` says events may have been missed."""

    id: str
    type: str
    data: dict[str, Any]


class _Watcher:
    def __init__(self, flow_id: str | None, execution_id: str | None) -> None:
        self.flow_id = flow_id
        self.execution_id = execution_id
        self.queue: asyncio.Queue[Delivered] = asyncio.Queue(QUEUE)
        self.lost = False

    def wants(self, event: Event) -> bool:
        if self.execution_id is not None:
            return event["execution_id"] == self.execution_id
        if self.flow_id is not None:
            return event["flow_id"] == self.flow_id and event["type"] == "execution"
        return event["type"] == "execution"


class EventHub:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        self._conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._epoch = secrets.token_hex(4)
        self._seq = 0
        self._recent: collections.deque[tuple[int, Event]] = collections.deque(maxlen=KEEP)
        self._watchers: set[_Watcher] = set()
        self._listener: asyncio.Task[None] | None = None
        self._gap = 0  # the last event number that was skipped, not kept
        self._left = -RECONNECT_GRACE_S  # when the last watcher left

    @property
    def wanted(self) -> bool:
        """Whether events are worth building: somebody watches, or watched a moment ago (and may
        reconnect for what it missed), or other servers may watch."""
        return self._postgres or bool(self._watchers) or time.monotonic() - self._left < RECONNECT_GRACE_S

    def skipped(self) -> None:
        """An event that was not built, nobody watching: a watcher reconnecting from before it reloads."""
        self._seq += 1
        self._gap = self._seq

    @property
    def via_database(self) -> bool:
        """True when events travel through the database (PostgreSQL), False when handed over here."""
        return self._postgres

    async def start(self, runner_id: str | None = None) -> None:
        """Listen for other processes' events; ``runner_id`` is this process's, whose events come
        from its own writer."""
        loop = asyncio.get_running_loop()
        if not self._postgres:
            self._listener = loop.create_task(self._poll(runner_id), name="flowdeck-events")
            return
        ready = asyncio.Event()
        self._listener = loop.create_task(self._listen(ready), name="flowdeck-events")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ready.wait(), 10)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener

    def dispatch(self, events: list[Event]) -> None:
        """Number the events and hand them to the watchers that want them."""
        for event in events:
            self._seq += 1
            self._recent.append((self._seq, event))
            for watcher in list(self._watchers):
                if watcher.wants(event):
                    self._offer(watcher, Delivered(f"{self._epoch}-{self._seq}", event["type"], event))

    @contextlib.asynccontextmanager
    async def watch(
        self, *, flow_id: str | None = None, execution_id: str | None = None, last_event_id: str | None = None
    ) -> AsyncIterator[asyncio.Queue[Delivered]]:
        """A queue of the events wanted, from now (or from after ``last_event_id``)."""
        watcher = _Watcher(flow_id, execution_id)
        self._watchers.add(watcher)
        try:
            if last_event_id:
                self._replay(watcher, last_event_id)
            yield watcher.queue
        finally:
            self._watchers.discard(watcher)
            self._left = time.monotonic()

    def _replay(self, watcher: _Watcher, last_event_id: str) -> None:
        epoch, _, seq_text = last_event_id.partition("-")
        oldest = self._recent[0][0] if self._recent else self._seq + 1
        known = seq_text.isdigit() and int(seq_text) >= max(oldest - 1, self._gap)
        if epoch != self._epoch or not known:
            self._offer(watcher, self._reload("events since that one are not known here"))
            return
        for seq, event in self._recent:
            if seq > int(seq_text) and watcher.wants(event):
                self._offer(watcher, Delivered(f"{self._epoch}-{seq}", event["type"], event))

    def _reload(self, reason: str) -> Delivered:
        return Delivered(f"{self._epoch}-{self._seq}", "reload", {"reason": reason})

    def _offer(self, watcher: _Watcher, delivered: Delivered) -> None:
        if watcher.lost:
            return
        try:
            watcher.queue.put_nowait(delivered)
        except asyncio.QueueFull:
            watcher.lost = True  # too slow: tell it to reload rather than keep an unbounded backlog
            with contextlib.suppress(asyncio.QueueEmpty):
                watcher.queue.get_nowait()
            watcher.queue.put_nowait(self._reload("too many events to keep up with"))

    async def _listen(self, ready: asyncio.Event) -> None:
        first = True
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True
                ) as connection:
                    await connection.execute(f"LISTEN {EVENTS_CHANNEL}")
                    if not first:  # events may have gone by while not listening
                        for watcher in list(self._watchers):
                            self._offer(watcher, self._reload("the event stream was interrupted"))
                    first = False
                    ready.set()
                    async for notice in connection.notifies():
                        self.dispatch(json.loads(notice.payload))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "event listener lost its connection (%s); listening again in %s s", exc, RECONNECT_S
                )
                await asyncio.sleep(RECONNECT_S)

    async def _poll(self, runner_id: str | None) -> None:
        after = await asyncio.to_thread(newest_execution_id, self._engine)
        watched: dict[str, tuple[str, int]] = {}  # others' running executions -> (status, steps done)
        steps_seen: dict[str, dict[int, tuple[str, int | None]]] = {}  # their steps -> (status, end)
        while True:
            await asyncio.sleep(POLL_S)
            if not self._watchers:
                continue
            try:
                changes = await asyncio.to_thread(
                    changes_by_others, self._engine, after_id=after, watched=watched, runner_id=runner_id
                )
            except Exception as exc:  # the database may be away for a while: look again later
                log.warning("could not look for other processes' executions: %s", exc)
                continue
            after = changes.last_id
            flow_of = {summary.id: summary.flow_id for summary in changes.summaries}
            events: list[Event] = []
            for step in changes.steps:
                execution_id, state = step["execution_id"], (step["status"], step["ended_at"])
                if execution_id not in flow_of:  # not read this time: next time
                    continue
                seen = steps_seen.setdefault(execution_id, {})
                if seen.get(step["idx"]) != state:
                    seen[step["idx"]] = state
                    events.append(event("step", flow_of[execution_id], execution_id, step))
            for summary in changes.summaries:
                state = (summary.status, summary.steps_done)
                if watched.get(summary.id) != state:
                    events.append(
                        event("execution", summary.flow_id, summary.id, dataclasses.asdict(summary))
                    )
                if summary.status == "pending":
                    watched[summary.id] = state
                else:
                    watched.pop(summary.id, None)
                    steps_seen.pop(summary.id, None)
            self.dispatch(events)


def notify_payloads(events: list[Event], limit: int = 7000) -> list[str]:
    """The events as JSON texts under PostgreSQL's NOTIFY payload limit (8000 bytes)."""
    payloads: list[str] = []
    batch: list[str] = []
    size = 2
    for event in events:
        text = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
        if len(text.encode()) > limit:
            continue  # cannot travel; the watchers see the next event of that execution
        if batch and size + len(text.encode()) + 1 > limit:
            payloads.append("[" + ",".join(batch) + "]")
            batch, size = [], 2
        batch.append(text)
        size += len(text.encode()) + 1
    if batch:
        payloads.append("[" + ",".join(batch) + "]")
    return payloads
