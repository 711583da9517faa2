"""What a serving process holds while it runs: the database, the event hub, the tracker and the
live flows, started and stopped together. Shared by ``serve`` (HTTP) and ``mcp`` (stdio); whoever
serves the flows subscribes to the catalog's changes, so this imports nothing of MCP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sqlalchemy import Engine

from flowdeck.catalog import Catalog
from flowdeck.events import EventHub
from flowdeck.flowfiles import load_flow_files
from flowdeck.settings import Settings
from flowdeck.store import database
from flowdeck.store.flows import FlowRecord, import_flow
from flowdeck.tracking import Tracker

Outcome = Literal["created", "updated", "unchanged"]


def import_flow_files(db: Engine, paths: Iterable[Path]) -> list[tuple[FlowRecord, Outcome]]:
    """Load every flow file named (all of them, or :class:`~flowdeck.errors.InvalidFlow` with every
    problem), then create or update each flow."""
    definitions = load_flow_files(paths)
    return [import_flow(db, d.model_dump(mode="json", exclude_none=True)) for d in definitions]


@dataclass
class Runtime:
    settings: Settings
    db: Engine
    hub: EventHub
    tracker: Tracker
    catalog: Catalog

    @classmethod
    def create(cls, settings: Settings, *, kind: str) -> Runtime:
        """The parts, not started: no I/O happens here."""
        db = database.open_database(settings.database_url)
        hub = EventHub(db)
        tracker = Tracker(db, settings, kind=kind, hub=hub)
        return cls(settings, db, hub, tracker, Catalog(db, tracker))

    @contextlib.asynccontextmanager
    async def running(self, flow_paths: Iterable[Path] = ()) -> AsyncIterator[Runtime]:
        """Migrate, import ``flow_paths``, recover and start tracking, watch for flow changes."""
        database.upgrade(self.db)
        import_flow_files(self.db, flow_paths)
        await self.tracker.start()
        await self.hub.start(self.tracker.runner_id)
        self.catalog.refresh()
        watcher = asyncio.get_running_loop().create_task(self.catalog.watch(), name="flowdeck-flow-watcher")
        try:
            yield self
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await self.hub.close()
            await self.tracker.close()
            self.db.dispose()
