"""Two versions of flowdeck side by side on the proxy hop: each serves the everything server's tools
(exposed, over HTTP) from its own source tree, and one client calls ``local__echo`` on both and
``echo`` directly, in turns, for a few rounds. For a change to the hop, measured on a noisy machine:

    python -m bench.proxy_ab OLD_SRC NEW_SRC      # e.g. a clone of the previous commit's src/

Prints, per round, each median and what each adds to the direct call.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from mcp import Client
from tests.support.postgres import free_port
from tests.support.processes import FLOWDECK, flowdeck_env, spawn
from tests.support.remotes import everything_http

ROUNDS, CALLS = 3, 300


def _serve(folder: Path, remote: str, source: str, tag: str) -> tuple[subprocess.Popen[bytes], str]:
    servers = folder / f"{tag}.json"
    servers.write_text(json.dumps({"mcpServers": {"local": {"url": remote, "expose": True}}}))
    port = free_port()
    env = {**flowdeck_env(f"sqlite:///{folder}/{tag}.db"), "PYTHONPATH": source}
    command = [*FLOWDECK, "serve", "--port", str(port), "--servers", str(servers)]
    return spawn(command, port=port, env=env), f"http://127.0.0.1:{port}/mcp"


async def _round(old: str, new: str, remote: str) -> dict[str, float]:
    async with Client(old) as a, Client(new) as b, Client(remote) as direct:
        await a.list_tools()
        await b.list_tools()
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "old": lambda: a.call_tool("local__echo", {"message": "x"}),
            "new": lambda: b.call_tool("local__echo", {"message": "x"}),
            "direct": lambda: direct.call_tool("echo", {"message": "x"}),
        }
        for _ in range(30):
            for call in calls.values():
                await call()
        times: dict[str, list[float]] = {name: [] for name in calls}
        order = list(calls)
        for i in range(CALLS):
            for name in order[i % 3 :] + order[: i % 3]:
                started = time.perf_counter()
                await calls[name]()
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(spent) * 1e3 for name, spent in times.items()}


def main(old_source: str, new_source: str) -> None:
    with everything_http() as remote, tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        old, old_url = _serve(folder, remote, old_source, "old")
        new, new_url = _serve(folder, remote, new_source, "new")
        try:
            for _ in range(ROUNDS):
                m = asyncio.run(_round(old_url, new_url, remote))
                print(
                    f"old {m['old']:.2f} ms, new {m['new']:.2f} ms, direct {m['direct']:.2f} ms:"
                    f" added {m['old'] - m['direct']:.2f} -> {m['new'] - m['direct']:.2f} ms"
                )
        finally:
            for process in (old, new):
                process.terminate()
                process.wait(30)


if __name__ == "__main__":
    main(*sys.argv[1:3])
