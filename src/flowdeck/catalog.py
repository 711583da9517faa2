"""The live flows a process offers as tools: held in memory, refreshed when the database says they
changed, so that a flow created, changed or deleted by any process (the CLI, the API, another server
on the same PostgreSQL) is seen without a restart. It is also how a ``flow`` node finds and runs
another flow (the engine's ``ChildFlows`` port).

Flows made to serve a remote server's tools are served only by a process that exposes that server
(it has the session to call it with); the others still list them on the Flows page."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from sqlalchemy import Engine

from flowdeck.engine import Parent, PreparedFlow, Run
from flowdeck.states import Transport
from flowdeck.store.flows import FlowRecord, flows_version, list_flows
from flowdeck.tracking import CallInfo, Tracker

log = logging.getLogger("flowdeck.catalog")

# how often a process looks for flow changes made elsewhere
WATCH_INTERVAL_S = 1.0


Listener = Callable[[], Awaitable[None]]


class Catalog:
    """Whoever serves the flows (the MCP server) subscribes to hear of changes: each listener is
    awaited, in a task of its own, after every refresh that found a change (but the first), whoever
    looked."""

    def __init__(self, db: Engine, tracker: Tracker, exposing: Collection[str] = ()) -> None:
        self._db = db
        self._tracker = tracker
        self._exposing = frozenset(exposing)
        self._listeners: list[Listener] = []
        self._version: tuple[int, int] | None = None
        self._flows: dict[str, FlowRecord] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def exposing(self) -> frozenset[str]:
        """The servers whose tools this process serves."""
        return self._exposing

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def refresh(self) -> bool:
        """Reload the live flows if they changed since the last look; True when they did."""
        version = flows_version(self._db)
        if version == self._version:
            return False
        first = self._version is None
        self._flows = {record.name: record for record in list_flows(self._db)}
        self._version = version
        if not first:
            for listener in self._listeners:
                task = asyncio.get_running_loop().create_task(listener())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return True

    def flows(self) -> list[FlowRecord]:
        """The flows this process serves as tools."""
        return [record for record in self._flows.values() if self._serves(record)]

    def served(self, name: str) -> FlowRecord | None:
        """The flow this process serves under that name; a name not known yet gets one fresh look."""
        record = self._flows.get(name)
        if record is None and self.refresh():
            record = self._flows.get(name)
        return record if record is not None and self._serves(record) else None

    def find(self, name: str) -> PreparedFlow | None:
        """The flow served under that name, ready to run."""
        record = self.served(name)
        return None if record is None else self._tracker.prepare(record)

    def _serves(self, record: FlowRecord) -> bool:
        return record.exposed_server is None or record.exposed_server in self._exposing

    def names(self) -> set[str]:
        return set(self._flows)

    def is_live(self, flow_id: str) -> bool:
        """Whether that flow is live, as of the last look."""
        return any(record.id == flow_id for record in self._flows.values())

    async def run(
        self,
        flow: PreparedFlow,
        arguments: Any,
        *,
        execution_id: str,
        parent: Parent,
        depth: int,
        deadline: float | None,
    ) -> Run:
        """Run ``flow`` as a child execution (``transport: flow``), recorded like any call."""
        return await self._tracker.run(
            flow,
            arguments,
            CallInfo(Transport.FLOW),
            execution_id=execution_id,
            parent=parent,
            depth=depth,
            deadline=deadline,
        )

    def input_schema(self, name: str) -> dict[str, Any] | None:
        record = self._flows.get(name)
        return None if record is None else record.definition.get("input_schema")

    async def watch(self, interval_s: float = WATCH_INTERVAL_S) -> None:
        """Look for changes every ``interval_s``; runs until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                self.refresh()
            except Exception as exc:  # the database may be away for a while: look again next time
                log.warning("could not look for flow changes: %s", exc)
