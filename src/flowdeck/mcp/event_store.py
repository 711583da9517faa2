"""What the response streams of MCP calls over HTTP sent, kept a while, so that a client whose stream
dropped reconnects with ``Last-Event-ID`` and gets what it missed (progress, and the result).

The SDK hands one event store to every session and names a stream by the request's id, which each
client numbers from 1: shared as it is, a client resuming stream "2" could be sent another client's
stream "2". So each session gets a view of its own (:meth:`RecentEvents.for_session`), and an event
id is only ever looked up within the session that was sent it. Events are kept ``KEEP_S`` (5
minutes) and at most ``MAX_EVENTS`` in all, the oldest going first; kept in memory, they do not
outlive the process (a client then gets its result from the execution, by the id in ``_meta``).
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mcp.server.streamable_http import (
    EventCallback,
    EventId,
    EventMessage,
    EventStore,
    StreamableHTTPServerTransport,
    StreamId,
)
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.types import JSONRPCMessage

KEEP_S = 300.0
MAX_EVENTS = 10_000


@dataclass(frozen=True, slots=True)
class _Event:
    session: str
    stream: StreamId
    message: JSONRPCMessage | None  # None: a priming event, which only gives the client an id
    stored_at: float


class RecentEvents:
    """Every session's events, oldest first."""

    def __init__(
        self,
        keep_s: float = KEEP_S,
        max_events: int = MAX_EVENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keep_s = keep_s
        self._max = max_events
        self._clock = clock
        self._prefix = secrets.token_hex(4)  # ids of another process (before a restart) are unknown here
        self._count = 0
        self._events: OrderedDict[EventId, _Event] = OrderedDict()
        self._streams: dict[tuple[str, StreamId], deque[EventId]] = {}

    def for_session(self, session_id: str) -> EventStore:
        """The store one session's transport is given."""
        return _SessionEvents(self, session_id)

    def __len__(self) -> int:
        return len(self._events)

    def add(self, session: str, stream: StreamId, message: JSONRPCMessage | None) -> EventId:
        now = self._clock()
        self._forget(now)
        self._count += 1
        event_id = f"{self._prefix}-{self._count}"
        self._events[event_id] = _Event(session, stream, message, now)
        self._streams.setdefault((session, stream), deque()).append(event_id)
        if len(self._events) > self._max:
            self._drop_oldest()
        return event_id

    async def replay(self, session: str, last_event_id: EventId, send: EventCallback) -> StreamId | None:
        """Send the events of ``last_event_id``'s stream that came after it; its stream, or None when
        that event is unknown (too old, another process's, another session's)."""
        self._forget(self._clock())
        last = self._events.get(last_event_id)
        if last is None or last.session != session:
            return None
        ids = list(self._streams.get((session, last.stream), ()))
        for event_id in ids[ids.index(last_event_id) + 1 :]:
            event = self._events.get(event_id)
            if event is not None and event.message is not None:
                await send(EventMessage(event.message, event_id))
        return last.stream

    def _forget(self, now: float) -> None:
        while self._events and now - next(iter(self._events.values())).stored_at > self._keep_s:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        _, event = self._events.popitem(last=False)
        key = (event.session, event.stream)
        stream = self._streams[key]
        stream.popleft()  # the oldest of all is the oldest of its stream
        if not stream:
            del self._streams[key]


class _SessionEvents(EventStore):
    def __init__(self, events: RecentEvents, session_id: str) -> None:
        self._events = events
        self._session = session_id

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        return self._events.add(self._session, stream_id, message)

    async def replay_events_after(
        self, last_event_id: EventId, send_callback: EventCallback
    ) -> StreamId | None:
        return await self._events.replay(self._session, last_event_id, send_callback)


def give_each_session_its_events(manager: StreamableHTTPSessionManager, events: RecentEvents) -> None:
    """Make each new session's transport store its events in a view of its own. The SDK has no
    option for it: its manager hands every transport the one store it was given, so the transport
    each admission makes gets its view here (checked at start, so that an SDK that changes this
    fails loudly rather than mixing sessions)."""
    admit = manager._admit_session

    def admit_with_own_events(requestor: Any) -> StreamableHTTPServerTransport | None:
        transport = admit(requestor)
        if transport is not None:
            if not hasattr(transport, "_event_store"):
                raise RuntimeError("the MCP SDK's transport has no _event_store: resuming streams needs work")
            transport._event_store = events.for_session(transport.mcp_session_id or "")
        return transport

    manager._admit_session = admit_with_own_events  # type: ignore[method-assign]
