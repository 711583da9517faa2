"""The tools of the MCP servers a servers file marks ``"expose": true``, served by flowdeck and
recorded like any flow.

Each remote tool becomes a flow made by flowdeck, named ``<prefix>__<tool>``: the remote's title,
description and input schema, and one ``mcp`` node passing the arguments on (``arguments: "{{ input
}}"``). Its row carries the tool as listed (output schema, annotations), and no one else may change
it. A follower per server keeps those flows equal to the server's list: at start, when the server
says its tools changed, when its session ends, and when a client lists flowdeck's tools. A server
that can't be reached is tried again in the background, the log saying why; its flows stay (calls
fail with the reason until it is back).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Collection
from typing import Any

from sqlalchemy import Engine

from flowdeck.catalog import Catalog
from flowdeck.engine import TOOL_NAME_PATTERN, ExposedFlowDefinition, FlowNotRunnable, PreparedFlow
from flowdeck.errors import ReadOnlyFlow
from flowdeck.remote import RemoteTools
from flowdeck.store.flows import FlowRecord, sync_exposed

log = logging.getLogger("flowdeck.exposure")

SEPARATOR = "__"
NODE_ID = "call"
# MCP's rule for a tool name (2025-11-25): 1 to 128 letters, digits, _, - or .
MCP_TOOL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0
# a client listing flowdeck's tools waits at most this long for the remotes' lists
REFRESH_TIMEOUT_S = 5.0
# a server listing more tools than this has the first ones served (each is a flow, a row, a tool)
MAX_TOOLS = 1000

Made = dict[str, tuple[dict[str, Any], dict[str, Any]]]


def exposed_name(prefix: str, tool: str) -> str:
    return f"{prefix}{SEPARATOR}{tool}"


def flow_for(server: str, prefix: str, tool: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The flow that serves a remote tool: its name, definition and ``exposed`` mark; ValueError with
    the reason when the tool can't be served."""
    remote_name = tool.get("name")
    if not isinstance(remote_name, str) or MCP_TOOL_NAME.fullmatch(remote_name) is None:
        raise ValueError("its name does not fit MCP's tool names (1 to 128 letters, digits, _, - or .)")
    name = exposed_name(prefix, remote_name)
    if re.fullmatch(TOOL_NAME_PATTERN, name) is None:
        raise ValueError(f"{name!r} is longer than the 64 characters flowdeck keeps of a tool name")
    schema = tool.get("inputSchema")
    title = tool.get("title") or (tool.get("annotations") or {}).get("title")
    definition: dict[str, Any] = {
        "name": name,
        **({"title": title} if isinstance(title, str) else {}),
        "description": tool.get("description") or "",
        "input_schema": schema if isinstance(schema, dict) else {"type": "object"},
        "nodes": [
            {
                "id": NODE_ID,
                "type": "mcp",
                "config": {"server": server, "tool": remote_name, "arguments": "{{ input }}"},
            }
        ],
    }
    try:
        PreparedFlow(ExposedFlowDefinition.model_validate(definition))
    except (ValueError, FlowNotRunnable) as exc:
        raise ValueError(f"it can't be served: {exc}") from None
    return name, definition, {"server": server, "tool": tool}


def check_deletable(record: FlowRecord, exposing: Collection[str]) -> None:
    """A flow serving the tool of a server this process exposes comes back at the next listing:
    deleting it is refused (:class:`~flowdeck.errors.ReadOnlyFlow`). One of a server no longer
    exposed is a leftover, and may go."""
    if record.exposed_server is not None and record.exposed_server in exposing:
        raise ReadOnlyFlow(
            f"{record.name!r} is made by flowdeck from {record.taken_by()}, which this server exposes:"
            " stop exposing the server (its entry in the servers file) to remove its tools"
        )


class Exposures:
    """The followers of the exposed servers of one process, started and stopped with it."""

    def __init__(self, db: Engine, catalog: Catalog, remote: RemoteTools, prefixes: dict[str, str]) -> None:
        self._db = db
        self._catalog = catalog
        self._remote = remote
        self._prefixes = prefixes
        self._changed = {server: asyncio.Event() for server in prefixes}
        self._syncing = {server: asyncio.Lock() for server in prefixes}
        self._up: set[str] = set()
        self._tried = {server: asyncio.Event() for server in prefixes}  # its first listing is over
        self._said: dict[str, set[str]] = {}
        self._synced: dict[str, Made] = {}  # what was last written for each server
        self._built: dict[str, tuple[list[dict[str, Any]], Made, set[str]]] = {}  # the last tools' flows
        self._tasks: list[asyncio.Task[None]] = []
        for server in prefixes:
            remote.follow(server, self._changed[server].set)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._follow(server), name=f"flowdeck-expose-{server}")
            for server in self._prefixes
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def list_now(self, servers: Collection[str]) -> None:
        """List these servers' tools and serve them, once, without following them (a command that
        runs one flow); a server that can't be reached is said in the log."""
        for server in servers:
            try:
                await self._sync(server)
            except Exception as exc:
                log.warning("the MCP server %r could not be listed: %s", server, exc)

    async def first_listings(self) -> bool:
        """Wait (at most ``REFRESH_TIMEOUT_S``) for the servers still being listed for the first
        time, as a call made right after a start may name one of their tools; whether any was."""
        pending = [event.wait() for event in self._tried.values() if not event.is_set()]
        if pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*pending), REFRESH_TIMEOUT_S)
        return bool(pending)

    async def refresh(self) -> None:
        """Bring every reachable server's tools up to date now (a client is listing flowdeck's); a
        server still being reached for the first time is waited for instead."""
        servers = [server for server in self._prefixes if server in self._up]
        tasks = [asyncio.ensure_future(self._sync(server)) for server in servers]
        tasks.append(asyncio.ensure_future(self.first_listings()))
        done, pending = await asyncio.wait(tasks, timeout=REFRESH_TIMEOUT_S)
        for task in pending:
            task.cancel()
        for task in done:
            if task.exception() is not None:
                log.info("could not list the tools of an MCP server: %s", task.exception())

    async def _follow(self, server: str) -> None:
        """List the server's tools, serve them, and wait for a change; until cancelled."""
        wait = RETRY_FIRST_S
        why_not = ""
        while True:
            self._changed[server].clear()
            try:
                await self._sync(server)
            except Exception as exc:
                self._up.discard(server)
                self._tried[server].set()
                if str(exc) != why_not:
                    why_not = str(exc)
                    log.warning(
                        "the MCP server %r is not served yet: %s (tried again every %g s at most)",
                        server,
                        why_not,
                        RETRY_MAX_S,
                    )
                await asyncio.sleep(wait)
                wait = min(wait * 2, RETRY_MAX_S)
                continue
            if why_not:
                log.warning("the MCP server %r answers: its tools are served", server)
            wait, why_not = RETRY_FIRST_S, ""
            self._up.add(server)
            self._tried[server].set()
            await self._changed[server].wait()

    async def _sync(self, server: str) -> None:
        tools = await self._remote.list_tools(server)
        async with self._syncing[server]:
            made, skipped = self._flows_for(server, tools)
            if made == self._synced.get(server) and set(made) <= self._catalog.names():
                return  # as last time, and still there: nothing to write
            prefix = exposed_name(self._prefixes[server], "")
            changed, refused = await asyncio.to_thread(sync_exposed, self._db, server, prefix, made)
            self._tell(server, skipped | set(refused))
            self._synced[server] = made
            if changed:
                self._catalog.refresh()

    def _flows_for(self, server: str, tools: list[dict[str, Any]]) -> tuple[Made, set[str]]:
        """The flows of a server's tools, and why the others are not served; made again only when
        the tools changed (checking a flow prepares it, a few hundred µs a tool)."""
        last = self._built.get(server)
        if last is not None and last[0] == tools:
            return last[1], last[2]
        made: Made = {}
        skipped: set[str] = set()
        if len(tools) > MAX_TOOLS:
            skipped.add(
                f"the MCP server {server!r} lists {len(tools)} tools: the first {MAX_TOOLS} are served"
            )
        for tool in tools[:MAX_TOOLS]:
            try:
                name, definition, exposed = flow_for(server, self._prefixes[server], tool)
            except ValueError as exc:
                skipped.add(
                    f"the tool {tool.get('name')!r} of the MCP server {server!r} is not served: {exc}"
                )
                continue
            made[name] = (definition, exposed)
        self._built[server] = (tools, made, skipped)
        return made, skipped

    def _tell(self, server: str, problems: set[str]) -> None:
        """Log each problem once, while it lasts."""
        for problem in sorted(problems - self._said.get(server, set())):
            log.error("%s", problem)
        self._said[server] = problems
