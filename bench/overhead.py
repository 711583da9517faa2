"""Tracking overhead: the same flows run tracked and with the null observer, interleaved in one run."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from flowdeck.engine import NullObserver, PreparedFlow, run_flow
from flowdeck.flowfiles import load_flow_text
from flowdeck.ids import new_id
from flowdeck.settings import Settings
from flowdeck.states import Status, Transport
from flowdeck.store import database
from flowdeck.store.flows import import_flow
from flowdeck.tracking import CallInfo, Tracker


def _flow(node: str) -> str:
    nodes = "\n".join(f"  - {{id: n{i}, type: {node}}}" for i in range(10))
    return f"name: bench_{node.split(',')[0]}\ninput_schema: {{type: object}}\nnodes:\n{nodes}\n"


SLEEPY = _flow("delay, config: {seconds: 0.001}")
TRANSFORM = _flow("transform, config: {value: {i: '{{ input.i }}', text: 'some output of a node'}}")


async def _time(tracker: Tracker, flow: PreparedFlow, tracked: bool, i: int) -> float:
    started = time.perf_counter()
    if tracked:
        run = await tracker.run(flow, {"i": i}, CallInfo(Transport.CLI))
    else:
        run = await run_flow(flow, {"i": i}, NullObserver(), execution_id=new_id())
    elapsed = time.perf_counter() - started
    assert run.status == Status.FULFILLED, run.error
    return elapsed


async def _measure(tracker: Tracker, flow: PreparedFlow, rounds: int) -> tuple[float, float]:
    """Median seconds per execution, (tracked, not tracked), alternating so that noise hits both."""
    tracked: list[float] = []
    untracked: list[float] = []
    for i in range(20):  # warm up both paths
        await _time(tracker, flow, True, i)
        await _time(tracker, flow, False, i)
    for i in range(rounds):
        first = i % 2 == 0
        a = await _time(tracker, flow, first, i)
        b = await _time(tracker, flow, not first, i)
        (tracked if first else untracked).append(a)
        (untracked if first else tracked).append(b)
    return statistics.median(tracked), statistics.median(untracked)


def overhead_rows(url: str, label: str, *, quick: bool) -> list[dict[str, Any]]:
    db = database.open_database(url)
    database.upgrade(db)
    records = [
        import_flow(db, load_flow_text(text).model_dump(exclude_none=True))[0] for text in (SLEEPY, TRANSFORM)
    ]
    rounds = 300 if quick else 1200

    async def measure_both() -> tuple[tuple[float, float], tuple[float, float]]:
        async with Tracker(db, Settings(database_url=url), kind="bench") as tracker:
            sleepy, transform = (tracker.prepare(record) for record in records)
            return await _measure(tracker, sleepy, rounds // 4), await _measure(tracker, transform, rounds)

    (slow_t, slow_u), (fast_t, fast_u) = asyncio.run(measure_both())
    db.dispose()
    return [
        {
            "name": f"overhead_ratio_10x1ms_{label}",
            "value": round(slow_t / slow_u, 3),
            "unit": "ratio",
            "note": f"10 delay nodes of 1 ms, median of {rounds // 4}: {slow_t * 1e3:.2f} ms tracked, "
            f"{slow_u * 1e3:.2f} ms not tracked",
        },
        {
            "name": f"overhead_us_per_node_{label}",
            "value": round((fast_t - fast_u) / 10 * 1e6, 1),
            "unit": "µs",
            "note": f"10 transform nodes, median of {rounds}: {fast_t * 1e6:.0f} µs tracked, "
            f"{fast_u * 1e6:.0f} µs not tracked",
        },
    ]
