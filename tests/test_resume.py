"""A dropped stream is not a dropped call: over streamable HTTP (2025 protocols) a call's stream
carries event ids, the call goes on when the stream drops, and the client that reconnects with
``Last-Event-ID`` gets the progress and the result it missed; another session can't read them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import types
from mcp.server.streamable_http import EventMessage

from flowdeck.mcp.event_store import KEEP_S, RecentEvents
from flowdeck.settings import Settings
from flowdeck.store import database
from flowdeck.store.reads import get_execution
from tests.support.server import eventually, served
from tests.support.sse import Received, read_events

PROTOCOL = "2025-11-25"
SLOW = """
name: slow_steps
nodes:
  - {id: one, type: delay, config: {seconds: 0.3}}
  - {id: two, type: delay, config: {seconds: 0.3}}
  - {id: three, type: transform, config: {value: done}}
"""


@pytest.fixture(scope="module")
def base(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    flows = tmp_path_factory.mktemp("resume")
    (flows / "slow_steps.yaml").write_text(SLOW)
    with served(Settings(database_url=module_database_url), [Path(flows)]) as url:
        yield url


class Session:
    """A raw MCP session over HTTP: what an SDK client does, step by step, so that the test can cut
    the stream where it wants."""

    def __init__(self, http: httpx.AsyncClient, base: str) -> None:
        self.http, self.url, self.id = http, f"{base}/mcp", ""

    def headers(self, **more: str) -> dict[str, str]:
        given = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": PROTOCOL}
        if self.id:
            given["Mcp-Session-Id"] = self.id
        return {**given, **more}

    async def open(self) -> Session:
        hello = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": PROTOCOL,
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        }
        response = await self.http.post(self.url, json=hello, headers=self.headers())
        assert response.status_code == 200
        self.id = response.headers["mcp-session-id"]
        done = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await self.http.post(self.url, json=done, headers=self.headers())).status_code == 202
        return self

    def call(self, request_id: int, tool: str) -> Any:
        body = {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "tools/call",
            "params": {"name": tool, "arguments": {}, "_meta": {"progressToken": "p"}},
        }
        return self.http.stream("POST", self.url, json=body, headers=self.headers())

    def resume(self, last_event_id: str) -> Any:
        return self.http.stream("GET", self.url, headers=self.headers(**{"Last-Event-ID": last_event_id}))


async def until_result(events: AsyncIterator[Received]) -> list[Received]:
    seen = []
    async for event in events:
        seen.append(event)
        if isinstance(event.data, dict) and "result" in event.data:
            break
    return seen


async def test_a_client_that_reconnects_gets_the_progress_and_result_it_missed(
    base: str, module_database_url: str
) -> None:
    db = database.open_database(module_database_url)
    async with httpx.AsyncClient(timeout=30) as http:
        session = await Session(http, base).open()
        async with session.call(7, "slow_steps") as stream:
            events = read_events(stream)
            priming = await anext(events)
            first = await anext(events)  # the first node's progress; then the line drops
        assert priming.id and priming.data is None
        assert first.data["params"]["progress"] == 1 and first.id

        # the call goes on without its stream
        pending = [
            e
            for e in (await http.get(f"{base}/api/executions", params={"status": "pending"})).json()["items"]
        ]
        assert [e["flow_name"] for e in pending] == ["slow_steps"]
        execution_id = pending[0]["id"]
        await eventually(lambda: get_execution(db, execution_id).status == "fulfilled")
        assert [s.status for s in get_execution(db, execution_id).steps] == ["fulfilled"] * 3

        async with session.resume(first.id) as stream:  # after it ended, within 5 minutes
            assert stream.status_code == 200
            missed = await until_result(read_events(stream))
    progress = [
        e.data["params"]["progress"]
        for e in missed
        if e.data and e.data.get("method") == "notifications/progress"
    ]
    assert progress == [2, 3]
    result = missed[-1].data
    assert result["id"] == 7
    assert result["result"]["_meta"]["flowdeck/execution_id"] == execution_id
    assert result["result"]["content"][0]["text"] == '"done"'
    db.dispose()


async def test_another_session_cannot_resume_a_stream_it_was_not_sent(base: str) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        owner = await Session(http, base).open()
        async with owner.call(1, "slow_steps") as stream:
            events = read_events(stream)
            await anext(events)  # priming
            first = await anext(events)
        stranger = await Session(http, base).open()
        async with stranger.call(1, "slow_steps") as stream:  # the same request id, in its own session
            theirs = await until_result(read_events(stream))
        with anyio.fail_after(10):  # (shared with the other session, its stream would wait for more)
            async with stranger.resume(first.id) as stream:
                stolen = [event async for event in read_events(stream) if event.data]
        async with owner.resume(first.id) as stream:
            mine = await until_result(read_events(stream))
    assert theirs[-1].data["result"]["content"][0]["text"] == '"done"'
    assert stolen == []
    assert (
        mine[-1].data["result"]["_meta"]["flowdeck/execution_id"]
        != theirs[-1].data["result"]["_meta"]["flowdeck/execution_id"]
    )


def _note(n: int) -> types.JSONRPCNotification:
    return types.JSONRPCNotification(jsonrpc="2.0", method="notifications/progress", params={"progress": n})


async def test_events_are_kept_five_minutes_and_bounded_in_number() -> None:
    now = [0.0]
    events = RecentEvents(max_events=50, clock=lambda: now[0])
    mine = events.for_session("a")
    first = await mine.store_event("1", None)
    ids = [await mine.store_event("1", _note(n)) for n in range(3)]
    sent: list[EventMessage] = []

    async def send(message: EventMessage) -> None:
        sent.append(message)

    assert await mine.replay_events_after(first, send) == "1"
    assert [m.event_id for m in sent] == ids  # the priming event itself is not sent again
    now[0] = KEEP_S + 1  # five minutes later: gone
    assert await mine.replay_events_after(ids[0], send) is None
    assert len(events) == 0
    for n in range(120):  # never more than max_events, the oldest going first
        last = await mine.store_event(str(n % 7), _note(n))
    assert len(events) == 50
    sent.clear()
    assert await mine.replay_events_after(last, send) == str(119 % 7) and sent == []
