"""The event hub: numbers the events it is given, keeps the latest for watchers that reconnect, and
hands each to the watchers that want it.

Events are published once their writes are committed, so a watcher that reads the database on an
event finds what the event announced. Where they come from (:mod:`flowdeck.events.feeds`): with
SQLite, from this process's writer, and, while somebody watches, from a look every ``POLL_S`` at
what other processes record in the same file; with PostgreSQL, from ``LISTEN``, since every writer
sends its events with its batch (``pg_notify``, delivered at commit), so a browser on one server
sees what runs on another.

A watcher that reconnects with the id of the last event it saw gets what it missed, or is told to
reload when the hub can't know.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy import Engine

from flowdeck.events import feeds
from flowdeck.events.event import Event

KEEP = 4096  # events kept for watchers that reconnect
QUEUE = 2048  # events a slow watcher may fall behind before it is told to reload
RECONNECT_GRACE_S = 120.0  # events are kept this long after the last watcher left


@dataclass(frozen=True, slots=True)
class Delivered:
    """An event as a watcher gets it, with its id; ``event`` None is a ``reload``: events may have
    been missed, for ``reason``."""

    id: str
    event: Event | None
    reason: str = ""


class _Watcher:
    def __init__(self, flow_id: str | None, execution_id: str | None) -> None:
        self.flow_id = flow_id
        self.execution_id = execution_id
        self.queue: asyncio.Queue[Delivered] = asyncio.Queue(QUEUE)
        self.lost = False

    def wants(self, event: Event) -> bool:
        if self.execution_id is not None:
            return event.execution_id == self.execution_id
        if self.flow_id is not None:
            return event.flow_id == self.flow_id and event.kind == "execution"
        return event.kind == "execution"


class EventHub:
    def __init__(self, db: Engine) -> None:
        self._db = db
        self.via_database = db.dialect.name == "postgresql"  # events travel through PostgreSQL
        self._epoch = secrets.token_hex(4)
        self._seq = 0
        self._recent: collections.deque[tuple[int, Event]] = collections.deque(maxlen=KEEP)
        self._watchers: set[_Watcher] = set()
        self._feed: asyncio.Task[None] | None = None
        self._gap = 0  # the last event number that was skipped, not kept
        self._left = -RECONNECT_GRACE_S  # when the last watcher left

    @property
    def wanted(self) -> bool:
        """Whether events are worth building: somebody watches, or watched a moment ago (and may
        reconnect for what it missed), or other servers may watch."""
        return self.via_database or bool(self._watchers) or time.monotonic() - self._left < RECONNECT_GRACE_S

    @property
    def watched(self) -> bool:
        return bool(self._watchers)

    def skipped(self) -> None:
        """An event that was not built, nobody watching: a watcher reconnecting from before it reloads."""
        self._seq += 1
        self._gap = self._seq

    async def start(self, runner_id: str | None = None) -> None:
        """Follow what other processes record; ``runner_id`` is this process's, whose events come
        from its own writer."""
        loop = asyncio.get_running_loop()
        if not self.via_database:
            self._feed = loop.create_task(feeds.poll(self, self._db, runner_id), name="flowdeck-events")
            return
        ready = asyncio.Event()
        self._feed = loop.create_task(feeds.listen(self, self._db, ready), name="flowdeck-events")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ready.wait(), 10)

    async def close(self) -> None:
        if self._feed is not None:
            self._feed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._feed

    def dispatch(self, events: list[Event]) -> None:
        """Number the events and hand them to the watchers that want them."""
        for event in events:
            self._seq += 1
            self._recent.append((self._seq, event))
            for watcher in list(self._watchers):
                if watcher.wants(event):
                    self._offer(watcher, Delivered(f"{self._epoch}-{self._seq}", event))

    def interrupted(self, reason: str) -> None:
        """Events may have gone by unseen: every watcher is told to reload."""
        for watcher in list(self._watchers):
            self._offer(watcher, self._reload(reason))

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
                self._offer(watcher, Delivered(f"{self._epoch}-{seq}", event))

    def _reload(self, reason: str) -> Delivered:
        return Delivered(f"{self._epoch}-{self._seq}", None, reason)

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
