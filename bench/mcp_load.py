"""MCP throughput: 8 concurrent SDK clients calling a 1-node flow over streamable HTTP, against a
tracked server and an untracked one (the null observer), in alternating rounds of one run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from mcp import Client
from tests.support.postgres import free_port
from tests.support.processes import spawn

CLIENTS = 8


@contextlib.contextmanager
def _server(database_url: str, *, untracked: bool) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "bench.mcp_server", "--port", str(port), "--database-url", database_url]
    process = spawn([*command, *(["--untracked"] if untracked else [])], port=port, env=os.environ.copy())
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(30)


async def _round(url: str, seconds: float) -> float:
    """Calls per second of 8 clients calling as fast as they can for ``seconds``."""
    count = 0

    async def one_client(first: int) -> None:
        nonlocal count
        async with Client(url, mode="auto") as client:
            await client.call_tool("bench_one", {"n": first})  # connected and warm before the clock
            await connected.wait()
            await ready.wait()
            n = first
            while time.perf_counter() < deadline:
                result = await client.call_tool("bench_one", {"n": n})
                assert not result.is_error, result.content
                count += 1
                n += CLIENTS

    connected, ready = asyncio.Barrier(CLIENTS + 1), asyncio.Event()
    deadline = float("inf")
    tasks = [asyncio.create_task(one_client(i)) for i in range(CLIENTS)]
    await connected.wait()
    started = time.perf_counter()
    deadline = started + seconds
    ready.set()
    await asyncio.gather(*tasks)
    return count / (time.perf_counter() - started)


def mcp_rows(*, quick: bool) -> list[dict[str, Any]]:
    # short rounds, often alternated: noise of the shared machine falls on both servers alike, and
    # the median is of four rounds or more, not the better of two
    rounds, seconds = (4, 1.5) if quick else (8, 4.0)
    tracked_rates: list[float] = []
    untracked_rates: list[float] = []
    with (
        tempfile.TemporaryDirectory() as folder,
        _server(f"sqlite:///{folder}/tracked.db", untracked=False) as tracked,
        _server(f"sqlite:///{folder}/untracked.db", untracked=True) as untracked,
    ):
        for i in range(rounds):
            order = [(tracked, tracked_rates), (untracked, untracked_rates)]
            for url, rates in order if i % 2 == 0 else reversed(order):
                rates.append(asyncio.run(_round(url, seconds)))
    tracked_rate = sorted(tracked_rates)[len(tracked_rates) // 2]
    untracked_rate = sorted(untracked_rates)[len(untracked_rates) // 2]
    detail = (
        f"{CLIENTS} SDK clients (protocol 2026-07-28), 1-node flow, SQLite, {rounds} rounds of {seconds:g} s"
    )
    return [
        {
            "name": "mcp_calls_per_s",
            "value": round(tracked_rate, 1),
            "unit": "calls/s",
            "note": f"tracked; {detail}",
        },
        {
            "name": "mcp_tracked_ratio",
            "value": round(tracked_rate / untracked_rate, 3),
            "unit": "ratio",
            "note": f"{tracked_rate:.0f} calls/s tracked, {untracked_rate:.0f} not tracked",
        },
    ]
