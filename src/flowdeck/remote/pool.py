"""Sessions with the MCP servers of the servers file, for ``mcp`` nodes: one per server per process,
opened on the first call and kept for the next ones.

A session lives in a task of its own (the SDK's client is entered and left in one task) and calls
are made on it from any task; several calls share it at once. A stdio server that exits is seen as
its output ends: the session is dropped, said in the log, and the next call starts the server
again. A call that finds the connection broken (an HTTP server that went away, say) fails, and the
next call connects afresh. Cancelling a call sends ``notifications/cancelled`` to the server (the
SDK does, when the awaiting task is cancelled).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx2
from mcp import Client, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from flowdeck import __version__
from flowdeck.engine import NodeError, ToolReply
from flowdeck.engine.ports import ProgressFn
from flowdeck.remote.servers import HttpServer, ServerSpec, StdioServer

log = logging.getLogger("flowdeck.remote")

CLIENT = types.Implementation(name="flowdeck", version=__version__)
CONNECT_TIMEOUT_S = 30.0
HTTP_TIMEOUT = httpx2.Timeout(30.0, read=300.0)


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


class _Session:
    """One server's client session, held open by a task of its own until closed or gone."""

    def __init__(self, name: str, spec: ServerSpec) -> None:
        self.name = name
        self.spec = spec
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

    async def _hold(self, ready: asyncio.Future[Client]) -> None:
        try:
            async with Client(self._transport(), mode="auto", client_info=CLIENT) as client:
                self.client = client
                ready.set_result(client)
                await self._stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            elif not isinstance(exc, asyncio.CancelledError):
                log.warning("MCP server %r: the session ended: %s", self.name, _reason(exc))
        finally:
            self.gone = True

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
            httpx2.AsyncClient(headers=spec.headers, timeout=HTTP_TIMEOUT) as http,
            streamable_http_client(spec.url, http_client=http) as (read, write),
        ):
            yield _Watched(read, self.ended), write


class RemoteTools:
    """The ``Tools`` port of the engine, for the servers of one servers file."""

    def __init__(self, servers: dict[str, ServerSpec]) -> None:
        self._servers = servers
        self._sessions: dict[str, _Session] = {}
        self._opening: dict[str, asyncio.Lock] = {}

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
            if not isinstance(exc, MCPError) or exc.error.code == types.CONNECTION_CLOSED:
                session.gone = True  # the connection is broken: the next call opens a new one
            raise NodeError(f"{server}: {_reason(exc)}") from None
        return ToolReply(
            content=[
                item.model_dump(mode="json", by_alias=True, exclude_none=True) for item in result.content
            ],
            structured=result.structured_content,
            is_error=bool(result.is_error),
            meta=dict(result.meta or {}),
        )

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
            session = _Session(server, spec)
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
