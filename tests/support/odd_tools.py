"""An MCP server over stdio whose tools put exposure to the test: ``fine``, ``x`` and ``_x`` (which
two prefixes can make one name), one name MCP does not allow and one too long for flowdeck, and
``bad_schema``, whose input schema can't be applied. Each tool answers with its own name; ``grow``
also adds a tool, ``grown``, without saying so (its change is seen when its tools are listed
again). Run as ``python tests/support/odd_tools.py``."""

from __future__ import annotations

from typing import Any

import anyio
from mcp import types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

NAMES = ["fine", "x", "_x", "has space", "n" * 70, "grow", "bad_schema"]
# a schema no validator can apply to a value of ``a``: its pattern is not a regex
BAD_SCHEMA = {"type": "object", "properties": {"a": {"type": "string", "pattern": "("}}}


async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
    return types.ListToolsResult(
        tools=[
            types.Tool(name=name, input_schema=BAD_SCHEMA if name == "bad_schema" else {"type": "object"})
            for name in NAMES
        ]
    )


async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
    if params.name == "grow" and "grown" not in NAMES:
        NAMES.append("grown")
    return types.CallToolResult(content=[types.TextContent(type="text", text=params.name)])


async def main() -> None:
    server = Server("odd-tools", on_list_tools=list_tools, on_call_tool=call_tool)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(main)
