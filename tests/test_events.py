"""Live events over Server-Sent Events: what a browser watching a flow or an execution receives."""

from __future__ import annotations

import json
from collections.abc import Iterator

import anyio
import httpx
import pytest
from mcp import Client
from sqlalchemy import Engine

from flowdeck.events import Event, EventHub
from flowdeck.records import ExecutionSummary, StepChange
from flowdeck.settings import Settings
from flowdeck.store.flows import find_live_flow
from tests.support import EXAMPLES
from tests.support.processes import FLOWDECK, flowdeck_env
from tests.support.server import served
from tests.support.sse import Received, read_events


@pytest.fixture(scope="module")
def database_url(module_database_url: str) -> str:
    """The module's tests share one server, on one database of each kind."""
    return module_database_url


@pytest.fixture(scope="module")
def base(database_url: str) -> Iterator[str]:
    """One server for the module's tests, on their shared database."""
    with served(Settings(database_url=database_url), [EXAMPLES]) as url:
        yield url


async def _until(events, stop) -> list[Received]:  # type: ignore[no-untyped-def]
    got = []
    with anyio.fail_after(20):
        async for received in events:
            if received.event == "comment":
                continue
            got.append(received)
            if stop(received):
                return got
    raise AssertionError("the stream ended")


async def _watching(events) -> None:  # type: ignore[no-untyped-def]
    with anyio.fail_after(10):
        async for received in events:
            if received.event == "comment" and received.data == "watching":
                return


async def test_a_flow_stream_gets_start_each_node_and_end(base: str, db: Engine) -> None:
    flow = find_live_flow(db, "slow_report")
    async with (
        httpx.AsyncClient(base_url=base, timeout=30) as http,
        http.stream("GET", f"/api/flows/{flow.id}/events") as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        events = read_events(response)
        await _watching(events)
        async with Client(f"{base}/mcp") as mcp:
            result = await mcp.call_tool("slow_report", {"pause_s": 0.05})
        got = await _until(events, lambda r: r.data["status"] != "pending")
    execution_id = result.meta["flowdeck/execution_id"]
    assert {r.event for r in got} == {"execution"}
    # each state once, in order; one may come as the newer one when that arrived first (on
    # PostgreSQL a batch of steps and the end travel on two connections), never the first or last
    states = [(r.data["status"], r.data["steps_done"]) for r in got]
    every = [("pending", 0), ("pending", 1), ("pending", 2), ("pending", 3), ("fulfilled", 3)]
    assert states == [state for state in every if state in states]
    assert states[0] == every[0] and states[-1] == every[-1]
    assert {r.data["id"] for r in got} == {execution_id}
    last = got[-1].data
    assert last["flow_name"] == "slow_report" and last["steps_total"] == 3 and last["ended_at"].endswith("Z")
    assert last["duration_ms"] > 0 and last["params_preview"] == "pause_s: 0.05"
    ids = [r.id for r in got]
    assert len(set(ids)) == len(ids)


def _summary(execution_id: str, status: str, done: int) -> Event:
    return Event.of(
        ExecutionSummary(
            id=execution_id, flow_id="f", flow_name="flow", status=status, started_at=1, ended_at=None,
            duration_ms=None, params_preview="", steps_done=done, steps_total=3, error_type=None,
            error_node_id=None, parent_execution_id=None, rerun_of=None,
        )
    )  # fmt: skip


def _step(execution_id: str, index: int, status: str) -> Event:
    return Event.of_step(
        "f",
        StepChange(
            execution_id=execution_id, index=index, node_id=f"n{index}", node_type="delay", status=status,
            started_at=1, ended_at=None, duration_ms=None, output_truncated=False, error=None,
        ),
    )  # fmt: skip


async def test_an_event_that_arrives_after_a_newer_one_is_sent_as_the_newer_one(db: Engine) -> None:
    """Notices of one execution may arrive out of order (its steps and its end travel on two
    PostgreSQL connections): a watcher never hears an older state after a newer one, and still gets
    an event for each change."""
    hub = EventHub(db)
    async with hub.watch(execution_id="e1") as queue, hub.watch(flow_id="f") as flow_queue:
        hub.dispatch([_summary("e1", "pending", 0), _step("e1", 0, "pending")])
        hub.dispatch(
            [_step("e1", 0, "fulfilled"), _summary("e1", "pending", 2), _summary("e1", "fulfilled", 3)]
        )
        hub.dispatch([_step("e1", 0, "pending"), _summary("e1", "pending", 1), _step("e1", 1, "pending")])
        hub.dispatch([_summary("e2", "pending", 0), _summary("e1", "fulfilled", 3)])  # the same again
        heard = [queue.get_nowait().event for _ in range(queue.qsize())]
        flow_heard = [flow_queue.get_nowait().event for _ in range(flow_queue.qsize())]
    assert [(e.kind, e.record.status, getattr(e.record, "steps_done", e.subject[1])) for e in heard] == [
        ("execution", "pending", 0), ("step", "pending", 0), ("step", "fulfilled", 0),
        ("execution", "pending", 2), ("execution", "fulfilled", 3),
        ("step", "fulfilled", 0), ("execution", "fulfilled", 3),  # the late two, as the newer ones
        ("step", "pending", 1), ("execution", "fulfilled", 3),
    ]  # fmt: skip
    assert [(e.record.id, e.record.status, e.record.steps_done) for e in flow_heard] == [
        ("e1", "pending", 0), ("e1", "pending", 2), ("e1", "fulfilled", 3), ("e1", "fulfilled", 3),
        ("e2", "pending", 0), ("e1", "fulfilled", 3),
    ]  # fmt: skip


async def test_an_execution_stream_gets_its_steps(base: str, db: Engine) -> None:
    async with Client(f"{base}/mcp") as mcp, anyio.create_task_group() as group:
        group.start_soon(mcp.call_tool, "slow_report", {"pause_s": 0.4})
        with anyio.fail_after(10):
            while True:
                items = httpx.get(f"{base}/api/executions", params={"status": "pending"}).json()["items"]
                if items:
                    break
                await anyio.sleep(0.02)
        execution_id = items[0]["id"]
        async with (
            httpx.AsyncClient(base_url=base, timeout=30) as http,
            http.stream("GET", f"/api/executions/{execution_id}/events") as response,
        ):
            events = read_events(response)
            got = await _until(events, lambda r: r.event == "execution" and r.data["status"] != "pending")
    steps = [(r.data["node_id"], r.data["status"]) for r in got if r.event == "step"]
    # it joined while "gather" ran: it sees the rest, in order
    assert steps[-4:] == [
        ("crunch", "pending"),
        ("crunch", "fulfilled"),
        ("format", "pending"),
        ("format", "fulfilled"),
    ]
    assert all(r.data["execution_id"] == execution_id for r in got if r.event == "step")
    assert got[-1].data["status"] == "fulfilled"


async def test_reconnecting_with_last_event_id_misses_nothing(base: str, db: Engine) -> None:
    flow = find_live_flow(db, "hello")
    url = f"/api/flows/{flow.id}/events"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http, Client(f"{base}/mcp") as mcp:
        async with http.stream("GET", url) as response:
            events = read_events(response)
            await _watching(events)
            await mcp.call_tool("hello", {"name": "one"})
            first = await _until(events, lambda r: r.data["status"] != "pending")
        # disconnected: two more executions happen meanwhile
        missed = [await mcp.call_tool("hello", {"name": name}) for name in ("two", "three")]
        async with http.stream("GET", url, headers={"Last-Event-ID": first[-1].id}) as response:
            events = read_events(response)
            replayed = await _until(
                events,
                lambda r: (
                    r.data["id"] == missed[-1].meta["flowdeck/execution_id"] and r.data["status"] != "pending"
                ),
            )
        async with http.stream("GET", url, headers={"Last-Event-ID": "somewhere-else-12"}) as response:
            events = read_events(response)
            told = await _until(events, lambda r: True)
    finals = [r.data["id"] for r in replayed if r.data["status"] == "fulfilled"]
    assert finals == [result.meta["flowdeck/execution_id"] for result in missed]
    assert told[0].event == "reload"
    assert "not known here" in told[0].data["reason"]


async def test_unknown_ids_have_no_stream(base: str) -> None:
    async with httpx.AsyncClient(base_url=base) as http:
        assert (await http.get("/api/flows/nope/events")).status_code == 404
        assert (await http.get("/api/executions/nope/events")).status_code == 404


async def test_what_another_process_runs_is_live_too(base: str, db: Engine, database_url: str) -> None:
    """A `flowdeck flows run` (or a `flowdeck mcp` for a desktop client) writes the same database:
    its execution shows on the flow's stream as it runs, on SQLite as on PostgreSQL."""
    flow = find_live_flow(db, "slow_report")
    command = [*FLOWDECK, "flows", "run", "slow_report", "--args", '{"pause_s": 0.6}', "--json"]
    async with (
        httpx.AsyncClient(base_url=base, timeout=30) as http,
        http.stream("GET", f"/api/flows/{flow.id}/events") as response,
    ):
        events = read_events(response)
        await _watching(events)
        process = await anyio.open_process(command, env=flowdeck_env(database_url))
        got = await _until(events, lambda r: r.data["status"] != "pending")
        await process.wait()
        output = json.loads(await process.stdout.receive())
    assert {r.data["id"] for r in got} == {output["execution_id"]}
    seen = [(r.data["status"], r.data["steps_done"]) for r in got]
    assert seen[0][0] == "pending" and seen[-1] == ("fulfilled", 3)
    assert ("pending", 1) in seen  # seen while it ran, not only at its end
    ids = [r.id for r in got]
    assert len(set(ids)) == len(ids)
