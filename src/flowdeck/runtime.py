"""What a serving process holds while it runs: the database, the tracker, the live flows and the
tool-change announcer, started and stopped together. Shared by ``serve`` (HTTP) and ``mcp`` (stdio)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sqlalchemy import Engine

from flowdeck.catalog import Catalog
from flowdeck.flows import load_flow_files
from flowdeck.mcp import ToolChanges
from flowdeck.settings import Settings
from flowdeck.store import db
from flowdeck.store.flows import FlowRecord, import_flow
from flowdeck.tracking import Tracker

Outcome = Literal["created", "updated", "unchanged"]


def import_flow_files(engine: Engine, paths: Iterable[Path]) -> list[tuple[FlowRecord, Outcome]]:
    """Load every flow file named (all of them, or :class:`~flowdeck.flows.FlowError` with every
    problem), then create or update each flow."""
    definitions = load_flow_files(paths)
    return [import_flow(engine, d.model_dump(mode="json", exclude_none=True)) for d in definitions]


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    tracker: Tracker
    catalog: Catalog
    changes: ToolChanges

    @classmethod
    def create(cls, settings: Settings, *, kind: str) -> Runtime:
        """The parts, not started: no I/O happens here."""
        engine = db.open_engine(settings.database_url)
        tracker = Tracker(engine, settings, kind=kind)
        changes = ToolChanges()
        return cls(settings, engine, tracker, Catalog(engine, tracker, changes.announce), changes)

    @contextlib.asynccontextmanager
    async def running(self, flow_paths: Iterable[Path] = ()) -> AsyncIterator[Runtime]:
        """Migrate, import ``flow_paths``, recover and start tracking, watch for flow changes."""
        db.upgrade(self.engine)
        import_flow_files(self.engine, flow_paths)
        await self.tracker.start()
        await self.tracker.events.start(self.tracker.runner_id)
        self.catalog.refresh()
        watcher = asyncio.get_running_loop().create_task(self.catalog.watch(), name="flowdeck-flow-watcher")
        try:
            yield self
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await self.tracker.events.close()
            await self.tracker.close()
            self.engine.dispose()
