"""``flowdeck mcp``: the same server over stdio, for clients that start it as a subprocess."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable
from pathlib import Path

from mcp.server.stdio import stdio_server

from flowdeck.mcp import build_server
from flowdeck.runtime import Runtime
from flowdeck.settings import Settings
from flowdeck.states import Transport


async def serve_stdio(settings: Settings, flow_paths: Iterable[Path] = ()) -> None:
    """Serve until the client closes stdin. Anything printed while starting goes to stderr: stdout
    carries protocol only."""
    runtime = Runtime.create(settings, kind="mcp")
    server = build_server(
        runtime.catalog, runtime.tracker, transport=Transport.STDIO, exposures=runtime.exposures
    )
    with contextlib.redirect_stdout(sys.stderr):
        starting = runtime.running(flow_paths)
        await starting.__aenter__()
    try:
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())
    finally:
        await starting.__aexit__(None, None, None)
