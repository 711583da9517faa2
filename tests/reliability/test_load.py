"""Load: 10,000 tool calls from 32 concurrent MCP clients (fulfilled, failing at a node, invalid
arguments, cancelled) against one server, and against two servers on one PostgreSQL: one record per
call, each with the status its client saw, no id twice; each server's memory stays flat. Throughput
and latency are printed."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from sqlalchemy import Engine, select

from flowdeck.store.tables import executions
from tests.reliability.test_crash_rounds import _serve

CALLS = int(os.environ.get("FLOWDECK_LOAD_CALLS", "10000"))
CLIENTS = 32
FLOW = """
name: mixed
input_schema:
  type: object
  properties: {n: {type: integer}, mode: {type: string}, pause: {type: number}}
  required: [n, mode, pause]
nodes:
  - {id: wait, type: delay, config: {seconds: "{{ input.pause }}"}}
  - {id: check, type: fail, when: "{{ input.mode == 'fail' }}", config: {message: "refused {{ input.n }}"}}
  - {id: done, type: transform, config: {value: {n: "{{ input.n }}"}}}
"""


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _kind(n: int) -> str:
    """Seven calls in ten succeed; one fails at a node, one has bad arguments, one is cancelled."""
    return {7: "fail", 8: "invalid", 9: "cancel"}.get(n % 10, "ok")


async def _load(urls: list[str], calls: range) -> tuple[dict[int, str], list[float]]:
    """The calls, shared by the clients; the clients, shared by the servers."""
    seen: dict[int, str] = {}
    latencies: list[float] = []

    async def one_client(url: str, numbers: list[int]) -> None:
        async with Client(url, mode="legacy") as client:
            for n in numbers:
                kind = _kind(n)
                arguments: dict[str, Any] = {"n": n, "mode": kind, "pause": 2.0 if kind == "cancel" else 0.0}
                if kind == "invalid":
                    arguments["n"] = str(n)
                started = time.perf_counter()
                if kind == "cancel":
                    with anyio.move_on_after(0.05):
                        await client.call_tool("mixed", arguments)
                    seen[n] = "cancelled"
                    continue
                result = await client.call_tool("mixed", arguments)
                latencies.append(time.perf_counter() - started)
                seen[n] = "error" if result.is_error else "fulfilled"

    numbers = list(calls)
    await asyncio.gather(*(one_client(urls[i % len(urls)], numbers[i::CLIENTS]) for i in range(CLIENTS)))
    return seen, latencies


def test_ten_thousand_calls_one_record_each(database_url: str, db: Engine, tmp_path: Path) -> None:
    _check_load(database_url, db, tmp_path, servers=1)


def test_ten_thousand_calls_across_two_servers_on_one_postgresql(
    database_url: str, db: Engine, tmp_path: Path
) -> None:
    if db.dialect.name != "postgresql":
        pytest.skip("several servers share a PostgreSQL database; SQLite serves one")
    _check_load(database_url, db, tmp_path, servers=2)


def _check_load(database_url: str, db: Engine, tmp_path: Path, *, servers: int) -> None:
    flows = tmp_path / "mixed.yaml"
    flows.write_text(FLOW)
    served = [_serve(database_url, tmp_path, flows) for _ in range(servers)]
    urls = [url for _, url in served]
    try:
        asyncio.run(_load(urls, range(CALLS, CALLS + 200)))  # warm up, then measure memory
        before = [_rss_kb(process.pid) for process, _ in served]
        started = time.perf_counter()
        seen, latencies = asyncio.run(_load(urls, range(CALLS)))
        took = time.perf_counter() - started
        after = [_rss_kb(process.pid) for process, _ in served]
        time.sleep(0.5)  # cancelled calls' final writes
    finally:
        for process, _ in served:
            process.terminate()
            process.wait(30)
    with db.connect() as connection:
        rows = connection.execute(
            select(executions.c.id, executions.c.initial_params, executions.c.status, executions.c.error_type)
        ).all()
    assert len({row.id for row in rows}) == len(rows)
    recorded: dict[int, list[Any]] = {}
    for row in rows:
        n = int(json.loads(row.initial_params)["n"])
        recorded.setdefault(n, []).append(row)
    measured = {n: rows for n, rows in recorded.items() if n < CALLS}
    # a call cancelled by its client before the request reached the server has no record: no flow ran
    never_arrived = set(range(CALLS)) - set(measured)
    assert all(_kind(n) == "cancel" for n in never_arrived), sorted(never_arrived)[:10]
    assert len(never_arrived) <= max(5, CALLS // 100)
    assert all(len(rows) == 1 for rows in measured.values())
    for n, (row,) in measured.items():
        kind, saw = _kind(n), seen[n]
        if kind == "cancel":
            assert (row.status, row.error_type) in (("error", "cancelled"), ("fulfilled", None)), (n, row)
        elif kind == "invalid":
            assert (saw, row.status, row.error_type) == ("error", "error", "invalid_params")
        elif kind == "fail":
            assert (saw, row.status, row.error_type) == ("error", "error", "node_error")
        else:
            assert (saw, row.status) == ("fulfilled", "fulfilled")
    latencies.sort()
    memory = ", ".join(f"{b // 1024} → {a // 1024} MB" for b, a in zip(before, after, strict=True))
    print(
        f"\nload {db.dialect.name}, {servers} server(s): {CALLS} calls from {CLIENTS} clients in "
        f"{took:.1f} s = {CALLS / took:.0f} calls/s; p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, "
        f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms; server memory {memory}; "
        f"{len(never_arrived)} cancelled before reaching the server"
    )
    for b, a in zip(before, after, strict=True):
        assert a < b * 1.5 + 64 * 1024, (before, after)
