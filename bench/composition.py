"""What composing costs: an mcp node's hop (a flowdeck call that relays to another MCP server,
against calling that server directly), the same for the server's tool exposed by flowdeck (a proxy),
a flow node's child execution (against the same work inline), and how many map items a second a
tracked map gets through."""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mcp import Client
from tests.support.postgres import free_port
from tests.support.processes import FLOWDECK, flowdeck_env, spawn
from tests.support.remotes import everything_http

from flowdeck.runtime import Runtime
from flowdeck.settings import Settings
from flowdeck.states import Status, Transport
from flowdeck.tracking import CallInfo

RELAY = """
name: relay
input_schema: {type: object, properties: {message: {type: string}}, required: [message]}
nodes:
  - {id: echo, type: mcp, config: {server: local, tool: echo, arguments: {message: "{{ input.message }}"}}}
"""
CHILD = "name: child\nnodes:\n  - {id: value, type: transform, config: {value: {n: '{{ input.n }}'}}}\n"
VIA_CHILD = """
name: via_child
nodes:
  - {id: run, type: flow, config: {flow: child, arguments: {n: "{{ input.n }}"}}}
"""
INLINE = "name: inline\nnodes:\n  - {id: value, type: transform, config: {value: {n: '{{ input.n }}'}}}\n"
MAP = """
name: map_1000
nodes:
  - id: each
    type: map
    config: {items: "{{ range(1000) | list }}", node: {type: transform, config: {value: "{{ item * 2 }}"}}}
"""


@contextlib.contextmanager
def _relay_server(folder: Path, remote: str) -> Iterator[str]:
    """A flowdeck serving the relay flow, whose mcp node calls ``remote``, and ``remote``'s tools,
    exposed (``local__echo``)."""
    (folder / "relay.yaml").write_text(RELAY)
    servers = folder / "servers.json"
    servers.write_text(json.dumps({"mcpServers": {"local": {"url": remote, "expose": True}}}))
    port = free_port()
    env = flowdeck_env(f"sqlite:///{folder}/relay.db")
    command = [
        *FLOWDECK,
        "serve",
        "--port",
        str(port),
        "--flows",
        str(folder / "relay.yaml"),
        "--servers",
        str(servers),
    ]
    process = spawn(command, port=port, env=env)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(30)


async def _hop(flowdeck: str, remote: str, rounds: int) -> dict[str, float]:
    """Median seconds of a call through flowdeck's relay flow, of the exposed tool, and of the same
    tool called directly, in turns (whoever went first goes last next), each client's session opened
    (and warm) before the clock."""
    async with Client(flowdeck) as via, Client(remote) as straight:
        calls = {
            "relay": lambda m: via.call_tool("relay", {"message": m}),
            "exposed": lambda m: via.call_tool("local__echo", {"message": m}),
            "direct": lambda m: straight.call_tool("echo", {"message": m}),
        }
        times: dict[str, list[float]] = {name: [] for name in calls}
        await via.list_tools()  # waits for flowdeck's first listing of the remote's tools
        for _ in range(20):
            for call in calls.values():
                await call("warm")
        order = list(calls)
        for i in range(rounds):
            for name in order[i % 3 :] + order[: i % 3]:
                started = time.perf_counter()
                result = await calls[name](f"m{i}")
                times[name].append(time.perf_counter() - started)
                assert not result.is_error, result.content
    return {name: statistics.median(spent) for name, spent in times.items()}


async def _tracked(folder: Path, rounds: int) -> tuple[float, float, float]:
    """Medians of a flow node running a 1-transform child and of the transform inline, tracked,
    alternating; and map items a second."""
    runtime = Runtime.create(Settings(database_url=f"sqlite:///{folder}/compose.db"), kind="bench")
    files = []
    for name, text in (("child", CHILD), ("via_child", VIA_CHILD), ("inline", INLINE), ("map", MAP)):
        path = folder / f"{name}.yaml"
        path.write_text(text)
        files.append(path)
    async with runtime.running(files, serving=False):
        tracker, catalog = runtime.tracker, runtime.catalog
        via, inline, mapped = catalog.find("via_child"), catalog.find("inline"), catalog.find("map_1000")
        times: dict[str, list[float]] = {"via": [], "inline": []}

        async def once(name: str, flow: Any, n: int) -> None:
            started = time.perf_counter()
            run = await tracker.run(flow, {"n": n}, CallInfo(Transport.CLI))
            times[name].append(time.perf_counter() - started)
            assert run.status == Status.FULFILLED, run.error

        for i in range(20):
            await once("via", via, i)
            await once("inline", inline, i)
        times = {"via": [], "inline": []}
        for i in range(rounds):
            pair = [("via", via), ("inline", inline)]
            for name, flow in pair if i % 2 == 0 else reversed(pair):
                await once(name, flow, i)
        rates = []
        for _ in range(3):
            started = time.perf_counter()
            run = await tracker.run(mapped, {}, CallInfo(Transport.CLI))
            rates.append(1000 / (time.perf_counter() - started))
            assert run.status == Status.FULFILLED, run.error
    return statistics.median(times["via"]), statistics.median(times["inline"]), statistics.median(rates)


def composition_rows(*, quick: bool) -> list[dict[str, Any]]:
    rounds = 200 if quick else 1000
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        with everything_http() as remote, _relay_server(folder, remote) as flowdeck:
            hops = asyncio.run(_hop(flowdeck, remote, rounds))
        through, exposed, direct = hops["relay"], hops["exposed"], hops["direct"]
        via, inline, items_per_s = asyncio.run(_tracked(folder, rounds))
    return [
        {
            "name": "mcp_node_added_ms",
            "value": round((through - direct) * 1e3, 3),
            "unit": "ms",
            "note": f"a flow whose mcp node calls the everything server's echo over HTTP,"
            f" {through * 1e3:.2f} ms,"
            f" against echo called directly, {direct * 1e3:.2f} ms (medians of {rounds}, alternating)",
        },
        {
            "name": "proxy_added_ms",
            "value": round((exposed - direct) * 1e3, 3),
            "unit": "ms",
            "note": f"the everything server's echo exposed by flowdeck (local__echo, over HTTP both ways),"
            f" {exposed * 1e3:.2f} ms, against echo called directly, {direct * 1e3:.2f} ms"
            f" (medians of {rounds}, in turns)",
        },
        {
            "name": "subflow_added_us_sqlite",
            "value": round((via - inline) * 1e6, 1),
            "unit": "µs",
            "note": f"a flow node running a 1-transform child, {via * 1e6:.0f} µs, against the transform"
            f" inline, {inline * 1e6:.0f} µs, tracked (medians of {rounds}, alternating)",
        },
        {
            "name": "map_items_per_s",
            "value": round(items_per_s),
            "unit": "items/s",
            "note": "a map of 1,000 items over a transform, tracked, SQLite (median of 3)",
        },
    ]


if __name__ == "__main__":
    for row in composition_rows(quick="--quick" in sys.argv):
        print(row)
