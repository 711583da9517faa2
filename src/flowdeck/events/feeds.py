"""Where a hub's events from other processes come from: ``LISTEN`` on PostgreSQL, a look at the
database every ``POLL_S`` on SQLite (only while somebody watches)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import psycopg
from sqlalchemy import Engine

from flowdeck.events.event import Event
from flowdeck.events.wire import decode
from flowdeck.states import Status
from flowdeck.store.reads import changes_by_others, newest_execution_id
from flowdeck.store.runners import RESYNC, WATCHING_CHANNEL, watched_until
from flowdeck.store.writes import EVENTS_CHANNEL

if TYPE_CHECKING:
    from flowdeck.events.hub import EventHub

log = logging.getLogger("flowdeck.events")

RECONNECT_S = 1.0
POLL_S = 0.5  # SQLite: how often a watched hub looks for what other processes recorded


async def listen(hub: EventHub, db: Engine, ready: asyncio.Event) -> None:
    """Every event any process's writer sends, as PostgreSQL delivers it at commit."""
    conninfo = db.url.set(drivername="postgresql").render_as_string(hide_password=False)
    first = True
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as connection:
                await connection.execute(f"LISTEN {EVENTS_CHANNEL}")
                await connection.execute(f"LISTEN {WATCHING_CHANNEL}")
                if not first:
                    hub.interrupted("the event stream was interrupted")
                first = False
                ready.set()
                async for notice in connection.notifies():
                    if notice.channel == WATCHING_CHANNEL:
                        hub.watched_elsewhere(watched_until(notice.payload))
                    elif notice.payload == RESYNC:
                        hub.interrupted("another process recorded executions before it knew of watchers")
                    else:
                        hub.dispatch(decode(notice.payload))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("event listener lost its connection (%s); listening again in %s s", exc, RECONNECT_S)
            await asyncio.sleep(RECONNECT_S)


async def poll(hub: EventHub, db: Engine, runner_id: str | None) -> None:
    """The executions other processes started, and the state of those still running, turned into
    the events their writers would have given."""
    after = await asyncio.to_thread(newest_execution_id, db)
    watched: dict[str, tuple[Status, int]] = {}  # others' running executions -> (status, steps done)
    steps_seen: dict[str, dict[int, tuple[str, int | None]]] = {}  # their steps -> (status, end)
    while True:
        await asyncio.sleep(POLL_S)
        if not hub.watched:
            continue
        try:
            changes = await asyncio.to_thread(
                changes_by_others, db, after_id=after, watched=watched, runner_id=runner_id
            )
        except Exception as exc:  # the database may be away for a while: look again later
            log.warning("could not look for other processes' executions: %s", exc)
            continue
        after = changes.last_id
        flow_of = {summary.id: summary.flow_id for summary in changes.summaries}
        events: list[Event] = []
        for step in changes.steps:
            if step.execution_id not in flow_of:  # not read this time: next time
                continue
            seen = steps_seen.setdefault(step.execution_id, {})
            state = (step.status, step.ended_at)
            if seen.get(step.index) != state:
                seen[step.index] = state
                events.append(Event.of_step(flow_of[step.execution_id], step))
        for summary in changes.summaries:
            state = (summary.status, summary.steps_done)
            if watched.get(summary.id) != state:
                events.append(Event.of(summary))
            if summary.status == Status.PENDING:
                watched[summary.id] = state
            else:
                watched.pop(summary.id, None)
                steps_seen.pop(summary.id, None)
        hub.dispatch(events)
