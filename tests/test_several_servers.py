"""Several processes on one PostgreSQL: tools, events and recovery cross servers."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator

import anyio
import httpx
import httpx2
import psycopg
import pytest
from mcp import Client
from sqlalchemy import Engine, insert, select

from flowdeck.events import EventHub
from flowdeck.events.wire import decode
from flowdeck.flowfiles import load_flow_text
from flowdeck.settings import Settings
from flowdeck.store import database, flows
from flowdeck.store.flows import import_flow
from flowdeck.store.reads import Filter, get_execution, list_executions
from flowdeck.store.runners import RESYNC, announce_watched, recover, register_runner, send_resync
from flowdeck.store.tables import executions, runners
from flowdeck.store.writes import EVENTS_CHANNEL
from flowdeck.times import SECOND_US, now_us
from flowdeck.tracking import CallInfo, Tracker
from tests.support.processes import ServedProcess, serving
from tests.support.sse import read_events

SLOW = {
    "name": "very_slow",
    "nodes": [
        {"id": "first", "type": "transform", "config": {"value": 1}},
        {"id": "stuck", "type": "delay", "config": {"seconds": 120}},
    ],
}

TWO_STEPS = """
name: two_steps
nodes:
  - {id: first, type: transform, config: {value: 1}}
  - {id: second, type: transform, config: {value: 2}}
"""

pytestmark = pytest.mark.postgres


@pytest.fixture
def two_servers(pg_url: str) -> Iterator[list[ServedProcess]]:
    """Two servers on one database. A server's heartbeat goes stale after 3 s (not the default 30):
    the same recovery, sooner."""
    with serving(pg_url, 2, heartbeat_s=0.5, stale_after_s=3) as servers:
        yield servers


async def test_tools_and_events_cross_servers(two_servers: list[ServedProcess]) -> None:
    base_a, base_b = (server.base for server in two_servers)
    created = httpx.post(f"{base_a}/api/flows", json={**SLOW, "name": "made_on_a"})
    assert created.status_code == 201
    async with Client(f"{base_b}/mcp") as mcp_b:
        with anyio.fail_after(15):
            while "made_on_a" not in [tool.name for tool in (await mcp_b.list_tools()).tools]:
                await anyio.sleep(0.2)

    hello = httpx.get(f"{base_b}/api/flows").json()["items"]
    hello_id = next(flow["id"] for flow in hello if flow["name"] == "hello")
    async with (
        httpx.AsyncClient(base_url=base_b, timeout=30) as http,
        http.stream("GET", f"/api/flows/{hello_id}/events") as response,
    ):
        events = read_events(response)
        with anyio.fail_after(10):
            async for received in events:
                if received.event == "comment" and received.data == "watching":
                    break
        async with Client(f"{base_a}/mcp") as mcp_a:
            result = await mcp_a.call_tool("hello", {"name": "from A"})
        execution_id = result.meta["flowdeck/execution_id"]
        seen = []
        with anyio.fail_after(15):
            async for received in events:
                if received.event == "execution":
                    seen.append((received.data["id"], received.data["status"]))
                    if received.data["status"] != "pending":
                        break
    assert seen[-1] == (execution_id, "fulfilled")
    assert seen[0] == (execution_id, "pending")


async def test_a_killed_server_is_recovered_by_a_live_one(
    two_servers: list[ServedProcess], pg_url: str
) -> None:
    """The killed server's process stays a zombie until the test reaps it, so the live one can't see
    it is gone by its pid: it is recovered by its stale heartbeat, as a server on another host is."""
    (base_a, base_b), process_a = (server.base for server in two_servers), two_servers[0].process
    assert httpx.post(f"{base_a}/api/flows", json=SLOW).status_code == 201
    db = database.open_database(pg_url)
    try:
        async with Client(f"{base_a}/mcp") as mcp_a, anyio.create_task_group() as group:
            group.start_soon(mcp_a.call_tool, "very_slow", {})
            with anyio.fail_after(15):
                while not list_executions(db, Filter(status="pending")).items:
                    await anyio.sleep(0.1)
            execution_id = list_executions(db, Filter(status="pending")).items[0].id
            with anyio.fail_after(15):
                while [s.status for s in get_execution(db, execution_id).steps] != ["fulfilled", "pending"]:
                    await anyio.sleep(0.1)
            killed_at = time.monotonic()
            process_a.send_signal(signal.SIGKILL)
            group.cancel_scope.cancel()
    except* httpx2.TransportError:
        pass  # the call's connection dropped with its server (the client may say so as it closes)
    with anyio.fail_after(60):
        while httpx.get(f"{base_b}/api/executions/{execution_id}").json()["status"] == "pending":
            await anyio.sleep(0.2)
    took = time.monotonic() - killed_at
    record = httpx.get(f"{base_b}/api/executions/{execution_id}").json()
    assert record["error"]["type"] == "interrupted"
    assert record["error"]["node_id"] == "stuck"
    assert 2 < took < 60  # once its heartbeat was 3 s old, well within the 60 s promised
    db.dispose()


def test_racing_recoveries_mark_each_execution_once(pg_url: str) -> None:
    db = database.open_database(pg_url)
    dead = "01000000-0000-7000-8000-00000000dead"
    with db.begin() as connection:
        connection.execute(
            insert(runners).values(
                id=dead, kind="serve", hostname="elsewhere/boot", pid=1, started_at=0, heartbeat_at=0
            )
        )
        connection.execute(
            insert(executions),
            [
                {
                    "id": f"01000000-0000-7000-8000-{n:012d}",
                    "flow_id": "f",
                    "flow_name": "f",
                    "flow_revision": 1,
                    "status": "pending",
                    "started_at": 1,
                    "params_preview": "",
                    "initial_params": "{}",
                    "steps_total": 1,
                    "transport": "http",
                    "runner_id": dead,
                }
                for n in range(300)
            ],
        )
    marked: list[int] = []
    barrier = threading.Barrier(4)

    def race() -> None:
        barrier.wait()
        marked.append(recover(db, stale_after_s=30))

    threads = [threading.Thread(target=race) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(marked) == 300
    assert list_executions(db, Filter(status="pending")).total == 0
    assert list_executions(db, Filter(status="error")).total == 300
    db.dispose()


def test_servers_starting_together_import_the_same_flows_once(
    db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race of two servers importing one file at once: the loser finds the flow made by the
    winner (between its look and its insert) and takes it as it is."""
    definition = load_flow_text("name: shared\nnodes: []\n").model_dump(mode="json", exclude_none=True)
    made, _ = import_flow(db, definition)  # the other server, first
    real_find, looks = flows.find_live_flow, []

    def find_after_the_other(db: Engine, name: str) -> flows.FlowRecord | None:
        looks.append(name)
        return None if len(looks) == 1 else real_find(db, name)  # not there yet at the first look

    monkeypatch.setattr(flows, "find_live_flow", find_after_the_other)
    again, outcome = import_flow(db, definition)
    assert len(looks) == 2
    assert (again.id, outcome) == (made.id, "unchanged")


async def _notices(connection: psycopg.AsyncConnection, seconds: float) -> list[str]:
    return [notice.payload async for notice in connection.notifies(timeout=seconds)]


async def test_events_travel_only_while_some_server_watches(pg_url: str) -> None:
    """Events are built and sent through PostgreSQL only when some server has watchers: a process
    that skipped some before it heard of them says so (``resync``), and its next events go out."""
    db = database.open_database(pg_url)
    flow, _ = import_flow(db, load_flow_text(TWO_STEPS).model_dump(exclude_none=True))
    conninfo = pg_url.replace("postgresql+psycopg://", "postgresql://")
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as listener:
        await listener.execute(f"LISTEN {EVENTS_CHANNEL}")
        async with Tracker(db, Settings(database_url=pg_url), kind="test") as tracker:
            quiet = await tracker.run(tracker.prepare(flow), {}, CallInfo("cli"))
            assert quiet.status == "fulfilled"
            assert await _notices(listener, 0.5) == []  # nobody watches: nothing built, nothing sent

            runner = register_runner(db, "serve")  # a server elsewhere gets a watcher
            announce_watched(db, runner, now_us() + 60 * SECOND_US)
            watched = await tracker.run(tracker.prepare(flow), {}, CallInfo("cli"))
            heard = await _notices(listener, 1.0)
            assert RESYNC in heard  # it heard with this run's first write, after skipping its start
            events = [event for payload in heard if payload != RESYNC for event in decode(payload)]
            assert ("step", "second") in [(e.kind, getattr(e.record, "node_id", None)) for e in events]
            ends = [e.record for e in events if e.kind == "execution" and e.record.status == "fulfilled"]
            assert [end.id for end in ends] == [watched.execution_id]

            third = await tracker.run(tracker.prepare(flow), {}, CallInfo("cli"))
            events = [event for payload in await _notices(listener, 1.0) for event in decode(payload)]
            statuses = [e.record.status for e in events if e.kind == "execution"]
            assert statuses[0] == "pending" and statuses[-1] == "fulfilled"  # all of it, from its start
            assert {e.execution_id for e in events} == {third.execution_id}
    db.dispose()


async def test_a_watched_server_says_so_and_its_watchers_reload_on_a_resync(pg_url: str) -> None:
    db = database.open_database(pg_url)
    runner = register_runner(db, "serve")
    hub = EventHub(db)
    await hub.start(runner)
    try:
        assert not hub.wanted  # nobody watches, here or anywhere
        async with hub.watch() as queue:
            with db.connect() as connection:
                until = connection.execute(select(runners.c.watched_until).where(runners.c.id == runner))
                assert until.scalar_one() > now_us() + 30 * SECOND_US  # processes starting later read it
            await asyncio.to_thread(send_resync, db)
            delivered = await asyncio.wait_for(queue.get(), 5)
            assert delivered.event is None and "before it knew of watchers" in delivered.reason
    finally:
        await hub.close()
        db.dispose()
