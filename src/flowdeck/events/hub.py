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

An event that arrives after a newer one of the same execution or step is sent with the newer state
in its place: on PostgreSQL an execution's batches of steps and its end go through two connections
(see :mod:`flowdeck.tracking.writer`), and their notices may arrive in either order; a watcher would
otherwise be told "pending, one node done" after "fulfilled". Each change still makes one event.

Events are built only when somebody may watch them: on SQLite, this process's watchers; on
PostgreSQL, any server's. A PostgreSQL server with watchers says so (``announce_watched``: on its
runner row, for processes that start later, and on a channel every writer listens to), and renews
it while watched. A process that skipped events before it heard sends a ``resync``: the watchers
everywhere reload rather than miss what it recorded meanwhile.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from flowdeck.events import feeds
from flowdeck.events.event import Event
from flowdeck.store.runners import announce_watched, send_resync
from flowdeck.times import SECOND_US, now_us

log = logging.getLogger("flowdeck.events")

KEEP = 4096  # events kept for watchers that reconnect
QUEUE = 2048  # events a slow watcher may fall behind before it is told to reload
RECONNECT_GRACE_S = 120.0  # events are kept this long after the last watcher left
WATCH_TTL_S = 60.0  # PostgreSQL: how long a server's word that it is watched holds; renewed before


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
        # the newest event of the latest subjects seen, sent in place of one that arrives out of date
        self._newest: collections.OrderedDict[tuple[str, int | None], Event] = collections.OrderedDict()
        self._watchers: set[_Watcher] = set()
        self._feed: asyncio.Task[None] | None = None
        self._gap = 0  # the last event number that was skipped, not kept
        self._left = -RECONNECT_GRACE_S  # when the last watcher left
        # PostgreSQL: until when (µs) some server's watchers want events; what this one announced
        self._runner_id: str | None = None
        self._elsewhere_until = 0
        self._announced_until = 0
        self._announcer: asyncio.Task[None] | None = None
        self._skipped_unseen = False  # events were skipped that another server's watchers may miss
        self._sending: set[asyncio.Task[None]] = set()

    @property
    def wanted(self) -> bool:
        """Whether events are worth building: somebody watches, or watched a moment ago (and may
        reconnect for what it missed), here or, on PostgreSQL, on another server."""
        if self._wanted_here:
            return True
        return self.via_database and now_us() < self._elsewhere_until

    @property
    def _wanted_here(self) -> bool:
        """This hub's watchers, or those that left a moment ago and may reconnect."""
        return bool(self._watchers) or time.monotonic() - self._left < RECONNECT_GRACE_S

    @property
    def watched(self) -> bool:
        return bool(self._watchers)

    def skipped(self) -> None:
        """An event that was not built, nobody watching: a watcher reconnecting from before it reloads."""
        self._seq += 1
        self._gap = self._seq
        self._skipped_unseen = True

    def watched_elsewhere(self, until_us: int) -> None:
        """Some server's watchers want events until ``until_us`` (PostgreSQL). If this process skipped
        events before it knew, it says so: those watchers reload."""
        if until_us <= self._elsewhere_until:
            return
        self._elsewhere_until = until_us
        if self._skipped_unseen and until_us > now_us():
            self._skipped_unseen = False
            self._in_background(asyncio.to_thread(send_resync, self._db))

    async def _announce(self) -> None:
        until = now_us() + int(WATCH_TTL_S * SECOND_US)
        self._elsewhere_until = max(self._elsewhere_until, until)  # hearing itself changes nothing
        self._skipped_unseen = False  # nobody watched anywhere while this process skipped
        await asyncio.to_thread(announce_watched, self._db, self._runner_id, until)
        self._announced_until = until

    async def _announce_when_due(self) -> None:
        if self._announced_until - now_us() < WATCH_TTL_S / 2 * SECOND_US:
            try:
                await self._announce()
            except Exception as exc:  # the database is away: other servers' events wait for it
                log.warning("could not tell other servers that this one is watched: %s", exc)

    async def _keep_announcing(self) -> None:
        while True:
            await asyncio.sleep(WATCH_TTL_S / 6)
            if self._wanted_here:
                await self._announce_when_due()

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._sending.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("could not tell other servers' watchers to reload: %s", task.exception())

    async def start(self, runner_id: str | None = None) -> None:
        """Follow what other processes record; ``runner_id`` is this process's, whose events come
        from its own writer."""
        loop = asyncio.get_running_loop()
        if not self.via_database:
            self._feed = loop.create_task(feeds.poll(self, self._db, runner_id), name="flowdeck-events")
            return
        self._runner_id = runner_id
        ready = asyncio.Event()
        self._feed = loop.create_task(feeds.listen(self, self._db, ready), name="flowdeck-events")
        self._announcer = loop.create_task(self._keep_announcing(), name="flowdeck-watched")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ready.wait(), 10)

    async def close(self) -> None:
        for task in (self._feed, self._announcer, *self._sending):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def dispatch(self, events: list[Event]) -> None:
        """Number the events and hand them to the watchers that want them (one out of date as the
        newest of its subject)."""
        for event in map(self._up_to_date, events):
            self._seq += 1
            self._recent.append((self._seq, event))
            for watcher in list(self._watchers):
                if watcher.wants(event):
                    self._offer(watcher, Delivered(f"{self._epoch}-{self._seq}", event))

    def _up_to_date(self, event: Event) -> Event:
        """The event, or the newer one of its subject that went by before it."""
        subject = event.subject
        newest = self._newest.get(subject)
        if newest is not None and event.progress < newest.progress:
            return newest
        self._newest[subject] = event
        self._newest.move_to_end(subject)
        if len(self._newest) > KEEP:
            self._newest.popitem(last=False)
        return event

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
        if self._announcer is not None:  # a PostgreSQL server: the others send their events from now
            await self._announce_when_due()
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
