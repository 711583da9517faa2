"""A small client for ``flowdeck call``: the SDK's own client, over streamable HTTP."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpx2
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from flowdeck.errors import CallFailed

ProgressFn = Callable[[float, float | None, str | None], Awaitable[None]]


def parse_arguments(pairs: Iterable[str], schema: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """``key=value`` pairs on top of ``base``. A value is JSON (``n=3``, ``tags=["a"]``) unless the
    schema says the property is a string, or it does not parse: then it is the text as typed."""
    arguments = dict(base)
    properties = schema.get("properties") or {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise CallFailed(f"arguments are key=value, not {pair!r}")
        declared = (properties.get(key) or {}).get("type")
        if declared == "string" or (isinstance(declared, list) and declared == ["string"]):
            arguments[key] = raw
            continue
        try:
            arguments[key] = json.loads(raw)
        except ValueError:
            arguments[key] = raw
    return arguments


async def _refused(response: httpx2.Response) -> None:
    if response.status_code == 401:
        hint = "give the right one with --token or FLOWDECK_AUTH_TOKEN"
        raise CallFailed(f"the server refused the token (401 Unauthorized): {hint}")
    if response.status_code in (403, 421):
        raise CallFailed(
            f"the server refused the request ({response.status_code}): its Host or Origin is not allowed"
        )


def _client(url: str, token: str | None) -> Client:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    http_client = create_mcp_http_client(headers=headers)
    http_client.event_hooks["response"].append(_refused)
    transport = streamable_http_client(url, http_client=http_client)
    return Client(transport, client_info=types.Implementation(name="flowdeck-call", version="1"))


async def call_flow(
    url: str,
    name: str,
    pairs: Iterable[str],
    base: dict[str, Any],
    *,
    token: str | None = None,
    on_progress: ProgressFn | None = None,
) -> types.CallToolResult:
    """List the tools (to read the flow's schema), then call it. Whatever keeps the call from being
    made is :class:`~flowdeck.errors.CallFailed`, with the reason."""
    try:
        return await _call(url, name, pairs, base, token, on_progress)
    except Exception as exc:
        while isinstance(exc, ExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]  # the client's task groups wrap what went wrong
        if isinstance(exc, CallFailed):
            raise exc from None
        reason = _reason(exc)
        if reason is None:
            raise
        raise CallFailed(reason) from exc


def _reason(exc: BaseException) -> str | None:
    if isinstance(exc, MCPError):
        return f"the server refused the call: {exc.error.message}"
    if isinstance(exc, httpx2.HTTPStatusError):
        return f"the server answered {exc.response.status_code}: {exc.response.text.strip()[:200]}"
    if isinstance(exc, httpx2.TransportError | OSError):
        return f"cannot reach the server: {exc}"
    return None


async def _call(
    url: str,
    name: str,
    pairs: Iterable[str],
    base: dict[str, Any],
    token: str | None,
    on_progress: ProgressFn | None,
) -> types.CallToolResult:
    async with _client(url, token) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        if name not in tools:
            known = ", ".join(sorted(tools)) or "none"
            raise CallFailed(f"no tool named {name!r} at {url} (tools: {known})")
        arguments = parse_arguments(pairs, tools[name].input_schema or {}, base)
        return await client.call_tool(name, arguments, progress_callback=on_progress)
