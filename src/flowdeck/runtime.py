"""What a process that runs flows holds while it runs: the database, the event hub, the tracker, the
live flows, the sessions with the MCP servers its flows call and the followers of the servers whose
tools it serves, started and stopped together.
Shared by ``serve`` (HTTP), ``mcp`` (stdio) and ``flows run``; whoever serves the flows subscribes
to the catalog's changes, so this imports nothing of serving MCP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sqlalchemy import Engine

from flowdeck.catalog import Catalog
from flowdeck.engine import Services
from flowdeck.events import EventHub
from flowdeck.exposure import Exposures
from flowdeck.flowfiles import check_references, load_flow_files
from flowdeck.remote import RemoteTools, exposed_prefixes, load_servers
from flowdeck.settings import Settings
from flowdeck.store import database
from flowdeck.store.flows import FlowRecord, import_flow, list_flows
from flowdeck.tracking import Tracker

Outcome = Literal["created", "updated", "unchanged"]


def import_flow_files(
    db: Engine, paths: Iterable[Path], servers: Collection[str] | None
) -> list[tuple[FlowRecord, Outcome]]:
    """Load every flow file named and check what they name (flows live or among them, ``servers``
    of the servers file), all of them or :class:`~flowdeck.errors.InvalidFlow` with every problem;
    then create or update each flow."""
    loaded = load_flow_files(paths)
    check_references(loaded, live_flows=[flow.name for flow in list_flows(db)], servers=servers)
    return [import_flow(db, item.definition.model_dump(mode="json", exclude_none=True)) for item in loaded]


def remote_tools(settings: Settings) -> RemoteTools | None:
    """The MCP servers of the servers file, when one is given; its problems raised now."""
    if settings.mcp_servers is None:
        return None
    return RemoteTools(load_servers(settings.mcp_servers))


@dataclass
class Runtime:
    settings: Settings
    db: Engine
    hub: EventHub
    tracker: Tracker
    catalog: Catalog
    remote: RemoteTools | None
    exposures: Exposures | None

    @classmethod
    def create(cls, settings: Settings, *, kind: str) -> Runtime:
        """The parts, not started: nothing touches the database or starts a server here (a servers
        file with problems is refused now)."""
        db = database.open_database(settings.database_url)
        hub = EventHub(db)
        tracker = Tracker(db, settings, kind=kind, hub=hub)
        remote = remote_tools(settings)
        prefixes = {} if remote is None else exposed_prefixes(remote.servers)
        catalog = Catalog(db, tracker, exposing=prefixes)
        exposures = None if remote is None or not prefixes else Exposures(db, catalog, remote, prefixes)
        tracker.services = Services(flows=catalog, tools=remote)
        return cls(settings, db, hub, tracker, catalog, remote, exposures)

    @property
    def server_names(self) -> list[str] | None:
        """The servers flows may name, or None when no servers file was given."""
        return None if self.remote is None else self.remote.names

    @contextlib.asynccontextmanager
    async def running(
        self, flow_paths: Iterable[Path] = (), *, serving: bool = True
    ) -> AsyncIterator[Runtime]:
        """Migrate, import ``flow_paths``, recover and start tracking; when ``serving``, follow other
        processes' events, watch for flow changes and serve the exposed servers' tools."""
        database.upgrade(self.db)
        import_flow_files(self.db, flow_paths, self.server_names)
        await self.tracker.start()
        self.catalog.refresh()
        watcher = None
        if serving:
            await self.hub.start(self.tracker.runner_id)
            watcher = asyncio.get_running_loop().create_task(
                self.catalog.watch(), name="flowdeck-flow-watcher"
            )
            if self.exposures is not None:
                self.exposures.start()
        try:
            yield self
        finally:
            if self.exposures is not None:
                await self.exposures.close()
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            await self.hub.close()
            if self.remote is not None:
                await self.remote.close()
            await self.tracker.close()
            self.db.dispose()
