"""Sessions with the MCP servers of the servers file, for ``mcp`` nodes: one per server per process,
opened on the first call and kept for the next ones.

A session lives in a task of its own (the SDK's client is entered and left in one task) and calls
are made on it from any task; several calls share it at once. A stdio server that exits is seen as
its output ends: the session is dropped, said in the log, and the next call starts the server
again. A call that finds the connection broken (an HTTP server that went away, say) fails, and the
next call connects afresh. Cancelling a call sends ``notifications/cancelled`` to the server (the
SDK does, when the awaiting task is cancelled).

Whoever serves a server's tools (:mod:`flowdeck.exposure`) follows it: its session hears the server
say its tools changed (``notifications/tools/list_changed``, or a ``subscriptions/listen`` stream on
2026-07-28), and the follower is told, as it is when the session ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx2
from mcp import Client, StdioServerParameters, types
from mcp.client.session import IncomingMessage
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ListenNotSupportedError, SubscriptionLost
from mcp.shared.exceptions import MCPError

from flowdeck import __version__
from flowdeck.engine import NodeError, ToolReply
from flowdeck.engine.ports import ProgressFn
from flowdeck.remote.servers import HttpServer, ServerSpec, StdioServer

log = logging.getLogger("flowdeck.remote")

CLIENT = types.Implementation(name="flowdeck", version=__version__)
CONNECT_TIMEOUT_S = 30.0
HTTP_TIMEOUT = httpx2.Timeout(30.0, read=300.0)
# a listing longer than this many pages is cut there (a server paging forever can't hold us), and
# one that takes longer than this fails (as does a hanging one)
MAX_TOOL_PAGES = 100
LIST_TIMEOUT_S = 30.0

Changed = Callable[[], None]


class _Watched:
    """A server's messages, read on for the session; when they end (a stdio server exited), the
    session is marked gone before anyone calls it again."""

    def __init__(self, stream: Any, on_end: Any) -> None:
        self._stream = stream
        self._on_end = on_end

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    async def receive(self) -> Any:
        try:
            return await self._stream.receive()
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                self._on_end()
            raise

    def __aiter__(self) -> _Watched:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except Exception as exc:
            raise StopAsyncIteration from exc

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def __aenter__(self) -> _Watched:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class _Drained(httpx2.AsyncByteStream):
    """A POST's response body read to its end before it is closed, for at most ``DRAIN_S``: the SDK
    closes a call's event stream as soon as the result is in, a moment before the server ends it,
    and a body closed unread costs its connection (a TCP connect and a socket left in TIME_WAIT per
    call). The task that made the request does it: the result is already on its way."""

    DRAIN_S = 0.5

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._stream.__aiter__()

    async def aclose(self) -> None:
        try:
            with anyio.move_on_after(self.DRAIN_S):
                async for _rest in self._stream:
                    pass
        except Exception:  # what is left of the body does not matter, only the connection
            pass
        finally:
            await self._stream.aclose()

    @staticmethod
    async def hook(response: httpx2.Response) -> None:
        """The client's response hook (which keeps its transport, and its proxies)."""
        if response.request.method == "POST":
            response.stream = _Drained(response.stream)


class _Session:
    """One server's client session, held open by a task of its own until closed or gone."""

    def __init__(self, name: str, spec: ServerSpec, on_change: Changed | None = None) -> None:
        self.name = name
        self.spec = spec
        self.on_change = on_change
        self.client: Client | None = None
        self.gone = False
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> Client:
        ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
        self._task = asyncio.get_running_loop().create_task(self._hold(ready), name=f"mcp-server-{self.name}")
        try:
            return await asyncio.wait_for(asyncio.shield(ready), CONNECT_TIMEOUT_S)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(BaseException):
                await self._task

    def ended(self) -> None:
        if not self.gone and not self._stop.is_set():
            log.warning(
                "MCP server %r closed its connection; it is started again at the next call", self.name
            )
        self.gone = True
        if self.on_change is not None:
            self.on_change()

    async def _hold(self, ready: asyncio.Future[Client]) -> None:
        try:
            async with Client(
                self._transport(), mode="auto", client_info=CLIENT, message_handler=self._message
            ) as client:
                self.client = client
                ready.set_result(client)
                async with anyio.create_task_group() as group:
                    if self.on_change is not None:
                        group.start_soon(self._listen, client)
                    await self._stop.wait()
                    group.cancel_scope.cancel()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            elif not isinstance(exc, asyncio.CancelledError):
                log.warning("MCP server %r: the session ended: %s", self.name, _reason(exc))
        finally:
            self.gone = True

    async def _message(self, message: IncomingMessage) -> None:
        """A 2025-protocol server says its tools changed by notification."""
        if isinstance(message, types.ToolListChangedNotification) and self.on_change is not None:
            self.on_change()

    async def _listen(self, client: Client) -> None:
        """A 2026-07-28 server says its tools changed on a ``subscriptions/listen`` stream; when the
        stream drops, so has the server."""
        try:
            async with client.listen(tools_list_changed=True) as changes:
                async for _event in changes:
                    self.on_change()  # type: ignore[misc]
            self.ended()  # closed by the server: it is going away
        except ListenNotSupportedError:
            return  # an earlier protocol: its notifications come to _message
        except SubscriptionLost as exc:
            log.info("MCP server %r: its change stream was cut: %s", self.name, _reason(exc))
            self.ended()
        except MCPError as exc:  # it does not offer the stream: its tools are listed again when asked
            if exc.error.code == types.CONNECTION_CLOSED:
                self.ended()
            else:
                log.info("MCP server %r does not say when its tools change: %s", self.name, _reason(exc))

    @contextlib.asynccontextmanager
    async def _transport(self) -> AsyncIterator[Any]:
        spec = self.spec
        if isinstance(spec, StdioServer):
            params = StdioServerParameters(
                command=spec.command, args=spec.args, env=spec.env or None, cwd=spec.cwd
            )
            async with stdio_client(params) as (read, write):
                yield _Watched(read, self.ended), write
            return
        async with (
            httpx2.AsyncClient(
                headers=spec.headers, timeout=HTTP_TIMEOUT, event_hooks={"response": [_Drained.hook]}
            ) as http,
            streamable_http_client(spec.url, http_client=http) as (read, write),
        ):
            yield _Watched(read, self.ended), write


class RemoteTools:
    """The ``Tools`` port of the engine, for the servers of one servers file."""

    def __init__(self, servers: dict[str, ServerSpec]) -> None:
        self._servers = servers
        self._sessions: dict[str, _Session] = {}
        self._opening: dict[str, asyncio.Lock] = {}
        self._followers: dict[str, Changed] = {}

    @property
    def servers(self) -> dict[str, ServerSpec]:
        return dict(self._servers)

    def follow(self, server: str, on_change: Changed) -> None:
        """Call ``on_change`` whenever ``server`` says its tools changed, or its session ends (from
        the next session opened on)."""
        self._followers[server] = on_change

    async def list_tools(self, server: str) -> list[dict[str, Any]]:
        """The server's tools as it lists them now (every page), as JSON objects."""
        session = await self._session(server)
        client: Client = session.client  # type: ignore[assignment]
        tools: list[dict[str, Any]] = []
        cursor: str | None = None
        try:
            async with asyncio.timeout(LIST_TIMEOUT_S):
                for _page in range(MAX_TOOL_PAGES):
                    listed = await client.list_tools(cursor=cursor, cache_mode="refresh")
                    tools.extend(
                        tool.model_dump(mode="json", by_alias=True, exclude_none=True)
                        for tool in listed.tools
                    )
                    cursor = listed.next_cursor
                    if cursor is None:
                        break
        except Exception as exc:
            self._failed(session, exc)
            raise NodeError(f"{server}: {_reason(exc)}") from None
        return tools

    def knows(self, server: str) -> bool:
        return server in self._servers

    @property
    def names(self) -> list[str]:
        return sorted(self._servers)

    def url_of(self, server: str) -> str | None:
        """Where a server is reached over HTTP; None for a stdio one (or an unknown one)."""
        spec = self._servers.get(server)
        return spec.url if isinstance(spec, HttpServer) else None

    async def call(
        self, server: str, tool: str, arguments: dict[str, Any], *, on_progress: ProgressFn
    ) -> ToolReply:
        session = await self._session(server)

        async def progress(done: float, total: float | None, message: str | None) -> None:
            on_progress(done, total, message)

        try:
            result = await session.client.call_tool(tool, arguments, progress_callback=progress)  # type: ignore[union-attr]
        except Exception as exc:
            self._failed(session, exc)
            raise NodeError(f"{server}: {_reason(exc)}") from None
        return ToolReply(
            content=[
                item.model_dump(mode="json", by_alias=True, exclude_none=True) for item in result.content
            ],
            structured=result.structured_content,
            is_error=bool(result.is_error),
            meta=dict(result.meta or {}),
        )

    @staticmethod
    def _failed(session: _Session, exc: Exception) -> None:
        if not isinstance(exc, MCPError) or exc.error.code == types.CONNECTION_CLOSED:
            session.gone = True  # the connection is broken: the next call opens a new one

    async def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()

    async def _session(self, server: str) -> _Session:
        """The server's open session; opened now if it has none, or if its last one is gone."""
        spec = self._servers.get(server)
        if spec is None:
            raise NodeError(f"no MCP server named {server!r} in the servers file")
        lock = self._opening.setdefault(server, asyncio.Lock())
        async with lock:
            session = self._sessions.get(server)
            if session is not None and not session.gone:
                return session
            if session is not None:
                await session.close()
                log.info("starting MCP server %r again", server)
            session = _Session(server, spec, self._followers.get(server))
            try:
                await session.open()
            except Exception as exc:
                raise NodeError(f"{server}: cannot connect: {_reason(exc)}") from None
            self._sessions[server] = session
            return session


def _reason(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, MCPError):
        return exc.error.message
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return " ".join(str(exc).split()) or type(exc).__name__
