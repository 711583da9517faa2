"""The MCP server: tools from live flows, and calls that run them, recorded.

Built on the SDK's low-level ``Server``: tools are dynamic (a flow changes at run time), arguments are
validated by the engine against the flow's own schema, and errors are shaped here so that no
exception text reaches a client.

A flow made to serve an exposed server's tool is listed as the remote lists it (schemas,
annotations, icons) under its own name, and its caller gets the remote's reply as it came (content
of any kind, structured content, ``isError``), with flowdeck's execution id added to its ``_meta``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from mcp import types
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.server.session import ServerSession
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged
from mcp.shared.exceptions import MCPError

from flowdeck import __version__
from flowdeck.catalog import Catalog
from flowdeck.engine import Run, StepRun
from flowdeck.errors import ExecutionNotFound, RecordingFailed
from flowdeck.exposure import Exposures
from flowdeck.records import dump_json
from flowdeck.states import Transport
from flowdeck.store.flows import FlowRecord
from flowdeck.store.reads import get_execution
from flowdeck.tracking import CallInfo, Tracker

log = logging.getLogger("flowdeck.mcp")
T = TypeVar("T")

EXECUTION_ID_META = "flowdeck/execution_id"
# an agent reads an execution (why its call failed, say) by the id it got in _meta
EXECUTION_URI = "flowdeck://executions/"
EXECUTION_TEMPLATE = types.ResourceTemplate(
    uri_template=EXECUTION_URI + "{execution_id}",
    name="execution",
    title="A recorded execution",
    description="One call of a flow as flowdeck recorded it: its arguments, each node's output and error,"
    " its result. The id is in each tool result's _meta (flowdeck/execution_id).",
    mime_type="application/json",
)
RESOURCE_NOT_FOUND = -32002  # the MCP specification's code
# a node running longer than this gets a progress notification anyway, so that clients with a
# request timeout (60 s is common) see the call is alive
KEEPALIVE_S = 15.0


class ToolChanges:
    """Tells every session that can hear it that the tool list changed: 2025-protocol sessions by
    ``notifications/tools/list_changed``, 2026-07-28 clients through ``subscriptions/listen``."""

    def __init__(self) -> None:
        self.bus = InMemorySubscriptionBus()
        self._connections: weakref.WeakSet[Connection] = weakref.WeakSet()

    def add_session(self, session: ServerSession) -> None:
        # A ServerSession lives for one request; the connection it speaks for lives as long as the
        # client's session. The low-level handlers are not handed the connection, so it is read here.
        connection = getattr(session, "_connection", None)
        if connection is not None:
            self._connections.add(connection)

    async def announce(self) -> None:
        await self.bus.publish(ToolsListChanged())
        for connection in list(self._connections):
            try:
                await connection.send_tool_list_changed()
            except Exception:  # a session that went away: forget it
                self._connections.discard(connection)


class _FlowServer(Server[Any]):
    """The low-level server, advertising ``tools.listChanged`` to 2025-protocol clients."""

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        return super().create_initialization_options(
            notification_options or NotificationOptions(tools_changed=True),
            experimental_capabilities,
            extensions,
        )


class _Progress:
    """One ``notifications/progress`` per finished node, in order; within a node, what it says of
    itself (``each [k/n]``, ``call (try 2)``) and a keep-alive while it runs long. Progress only
    grows: what comes within a node adds a little less each time, never a whole node."""

    def __init__(self, session: ServerSession, total: int) -> None:
        self._session = session
        self._total = total
        # (nodes done, message), or (None, message) for a step within the running node
        self._queue: asyncio.Queue[tuple[float | None, str] | None] = asyncio.Queue()
        self._done = 0.0
        self._running = ""
        self._task = asyncio.get_running_loop().create_task(self._send())

    async def execution_started(self, run: Run) -> None:
        return None

    def step_started(self, run: Run, step: StepRun) -> None:
        self._running = step.node_id

    def step_progress(self, run: Run, step: StepRun, message: str | None) -> None:
        if message is not None and step is run.steps[-1]:
            self._queue.put_nowait((None, message))

    def step_finished(self, run: Run, step: StepRun) -> None:
        self._running = ""
        self._queue.put_nowait((step.index + 1, step.node_id))

    async def execution_finished(self, run: Run) -> None:
        return None

    async def close(self) -> None:
        """Send what is queued, then stop."""
        self._queue.put_nowait(None)
        await self._task

    def abandon(self) -> None:
        """Stop without waiting: the call was cancelled or failed."""
        self._task.cancel()

    async def _send(self) -> None:
        within = 0  # what was said within the running node
        while True:
            try:
                item = await asyncio.wait_for(self._queue.get(), KEEPALIVE_S)
            except TimeoutError:
                item = (None, f"{self._running} running" if self._running else "running")
            if item is None:
                return
            done, message = item
            if done is None:
                within += 1
                await self._notify(self._done + 1 - 0.5**within, message)
                continue
            within = 0
            self._done = done
            await self._notify(done, message)

    async def _notify(self, progress: float, message: str) -> None:
        try:
            await self._session.report_progress(progress, self._total, message)
        except Exception as exc:  # a client gone away does not stop the flow
            log.debug("progress not sent: %s", exc)


def _text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def tool_result(flow_name: str, run: Run) -> types.CallToolResult:
    """The result a client sees: the output, or the error naming the node; always the execution id."""
    meta = {EXECUTION_ID_META: run.execution_id}
    if run.error is None:
        output = run.output
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=_text(output))],
            structured_content=output if isinstance(output, dict) else None,
            meta=meta,
        )
    where = f" at node '{run.error.node_id}'" if run.error.node_id else ""
    text = f"{flow_name} failed{where}: {run.error.message}"
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True, meta=meta)


# _meta keys the protocol reserves: what the remote says there is of its own connection, not ours
PROTOCOL_META = "io.modelcontextprotocol/"


def passed_on(run: Run) -> types.CallToolResult | None:
    """The remote's reply to an exposed tool's call as it came, when the remote gave one."""
    reply = run.steps[0].reply if run.steps else None
    if reply is None:
        return None
    meta = {key: value for key, value in reply.meta.items() if not key.startswith(PROTOCOL_META)}
    return types.CallToolResult.model_validate(
        {
            "content": reply.content,
            "structuredContent": reply.structured,
            "isError": reply.is_error,
            "_meta": {**meta, EXECUTION_ID_META: run.execution_id},
        }
    )


# what of a remote tool's listing its exposed tool keeps (not its name, nor how it runs as a task)
LISTED_KEYS = ("title", "description", "inputSchema", "outputSchema", "annotations", "icons")


def _tool(record: FlowRecord) -> types.Tool:
    if record.exposed is not None:
        listed = record.exposed["tool"]
        return types.Tool.model_validate(
            {"name": record.name, **{key: listed[key] for key in LISTED_KEYS if key in listed}}
        )
    return types.Tool(
        name=record.name,
        title=record.title,
        description=record.description,
        input_schema=record.definition.get("input_schema") or {"type": "object"},
    )


def _error_result(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


def _read_flows(read: Callable[[], T]) -> T:
    """The catalog may have to ask the database; if it can't, the client gets a plain protocol error."""
    try:
        return read()
    except Exception:
        log.exception("could not read the flows")
        raise MCPError(
            code=types.INTERNAL_ERROR, message="could not read the flows: database unavailable"
        ) from None


def build_server(
    catalog: Catalog, tracker: Tracker, *, transport: Transport, exposures: Exposures | None = None
) -> Server[Any]:
    """A server for one transport (``http`` or ``stdio``), which it records with every call. Its
    sessions hear of the catalog's changes; a client listing tools gets the exposed servers' tools
    as they are now."""
    changes = ToolChanges()
    catalog.subscribe(changes.announce)

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        if exposures is not None:
            await exposures.refresh()
        _read_flows(catalog.refresh)
        return types.ListToolsResult(
            tools=[_tool(record) for record in sorted(catalog.flows(), key=lambda r: r.name)]
        )

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        record = _read_flows(lambda: catalog.served(params.name))
        if record is None and exposures is not None and await exposures.first_listings():
            record = _read_flows(lambda: catalog.served(params.name))
        if record is None:
            raise MCPError(code=types.INVALID_PARAMS, message=f"unknown tool {params.name!r}")
        flow = tracker.prepare(record)
        client = ctx.session.client_params.client_info if ctx.session.client_params else None
        call = CallInfo(transport, client.name if client else None, client.version if client else None)
        progress = None
        if (ctx.meta or {}).get("progress_token") is not None:
            progress = _Progress(ctx.session, len(flow.nodes))
        try:
            run = await tracker.run(
                flow, params.arguments or {}, call, watcher=progress, cancelled_by="the client"
            )
        except BaseException as exc:
            if progress is not None:
                progress.abandon()
            if isinstance(exc, RecordingFailed):  # the database's own words stay in the server's log
                log.error("%s: %s", flow.name, exc)
                if exc.ran:
                    return _error_result(f"{flow.name} ran, but its end could not be recorded yet")
                return _error_result(f"{flow.name} was not run: the execution could not be recorded")
            if isinstance(exc, Exception):
                log.exception("internal error in %s", flow.name)
                return _error_result(f"{flow.name} failed: internal error")
            raise  # cancelled: the execution is recorded as such, the SDK answers the client
        if progress is not None:
            await progress.close()
        return (record.exposed is not None and passed_on(run)) or tool_result(flow.name, run)

    async def list_resources(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        return types.ListResourcesResult(resources=[])  # executions are read by their template

    async def list_resource_templates(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(resource_templates=[EXECUTION_TEMPLATE])

    async def read_resource(
        ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        uri = str(params.uri)
        execution_id = uri.removeprefix(EXECUTION_URI)
        if execution_id == uri or not execution_id or "/" in execution_id:
            raise MCPError(code=RESOURCE_NOT_FOUND, message=f"no resource {uri!r}: try {EXECUTION_URI}<id>")
        try:
            record = await asyncio.to_thread(get_execution, tracker.db, execution_id)
        except ExecutionNotFound as exc:
            raise MCPError(code=RESOURCE_NOT_FOUND, message=str(exc)) from None
        except Exception:
            log.exception("could not read execution %s", execution_id)
            raise MCPError(code=types.INTERNAL_ERROR, message="could not read the execution") from None
        text = dump_json(record)
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=uri, mime_type="application/json", text=text)]
        )

    async def initialized(ctx: ServerRequestContext[Any], params: types.NotificationParams) -> None:
        changes.add_session(ctx.session)

    server = _FlowServer(
        "flowdeck",
        version=__version__,
        title="flowdeck",
        instructions="Each tool runs a flow; every call is recorded as an execution (see _meta).",
        get_tool_input_schema=catalog.input_schema,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_resource_templates,
        on_read_resource=read_resource,
        on_subscriptions_listen=ListenHandler(changes.bus),
    )
    server.add_notification_handler("notifications/initialized", types.NotificationParams, initialized)
    return server
