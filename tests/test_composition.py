"""Composition with real parts: mcp nodes calling the reference "everything" MCP server (stdio and
streamable HTTP) and a second flowdeck; flow nodes running child executions; maps; retries, time
limits and on_error. One flowdeck serves the module, on each kind of database."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client, types
from sqlalchemy import Engine

from flowdeck.records import Execution
from flowdeck.remote import HttpServer, RemoteTools
from flowdeck.settings import Settings
from flowdeck.store.reads import get_execution, list_executions
from tests.support import EXAMPLES
from tests.support.remotes import (
    everything_http,
    everything_stdio,
    flaky_http,
    kill_stdio_servers,
    servers_file,
    tcp_connections_to,
)
from tests.support.server import eventually, served

HELPER_FLOWS = {
    "flaky.yaml": """
name: flaky
input_schema: {type: object, properties: {url: {type: string}}, required: [url]}
nodes:
  - {id: get, type: http, config: {url: "{{ input.url }}"}}
output: "{{ nodes.get.body }}"
""",
}

FLOWS = {
    "call_tool.yaml": """
name: call_tool
description: Calls any tool of any server of the servers file.
input_schema:
  type: object
  properties: {server: {type: string}, tool: {type: string}, arguments: {type: object, default: {}}}
  required: [server, tool]
nodes:
  - id: call
    type: mcp
    config: {server: "{{ input.server }}", tool: "{{ input.tool }}", arguments: "{{ input.arguments }}"}
""",
    "hang.yaml": """
name: hang
nodes:
  - id: wait
    type: mcp
    config: {server: helper, tool: slow_report, arguments: {topic: hang, pause_s: 20}}
    timeout_s: 1
""",
    "retry_flaky.yaml": """
name: retry_flaky
input_schema: {type: object, properties: {url: {type: string}}, required: [url]}
nodes:
  - id: call
    type: mcp
    config: {server: helper, tool: flaky, arguments: {url: "{{ input.url }}"}}
    retry: {attempts: 3, backoff_s: 0.05}
""",
    "child.yaml": """
name: child
input_schema: {type: object, properties: {n: {type: integer}}, required: [n]}
nodes:
  - {id: double, type: transform, config: {value: "{{ input.n * 2 }}"}}
  - {id: check, type: fail, when: "{{ input.n < 0 }}", config: {message: "negative: {{ input.n }}"}}
output: "{{ nodes.double }}"
""",
    "parent.yaml": """
name: parent
input_schema: {type: object, properties: {n: {type: integer}}, required: [n]}
nodes:
  - {id: run_child, type: flow, config: {flow: child, arguments: {n: "{{ input.n }}"}}}
  - {id: after, type: transform, config: {value: "{{ nodes.run_child + 1 }}"}}
""",
    "slow_child.yaml": """
name: slow_child
nodes:
  - {id: nap, type: delay, config: {seconds: 30}}
""",
    "slow_parent.yaml": """
name: slow_parent
timeout_s: 60
nodes:
  - {id: start, type: transform, config: {value: 1}}
  - {id: run_child, type: flow, config: {flow: slow_child}}
""",
    "short_parent.yaml": """
name: short_parent
timeout_s: 1
nodes:
  - {id: run_child, type: flow, config: {flow: slow_child}}
""",
    "map200.yaml": """
name: map200
input_schema: {type: object, properties: {bad: {type: integer, default: 17}}}
nodes:
  - id: each
    type: map
    config:
      items: "{{ range(200) | list }}"
      concurrency: 8
      node: {type: transform, config: {value: "{{ item * 10 if index != input.bad else nodes.nothing_here }}"}}
""",
    "map200_continue.yaml": """
name: map200_continue
nodes:
  - id: each
    type: map
    config:
      items: "{{ range(200) | list }}"
      concurrency: 8
      node:
        type: transform
        config: {value: "{{ item * 10 if index != 17 else nodes.nothing_here }}"}
        on_error: continue
""",
    "map_ordered.yaml": """
name: map_ordered
nodes:
  - id: each
    type: map
    config:
      items: [5, 1, 4, 2, 3]
      concurrency: 5
      node: {type: delay, config: {seconds: "{{ item / 50 }}"}}
""",
    "map_of_flows.yaml": """
name: map_of_flows
nodes:
  - id: each
    type: map
    config:
      items: [1, 2, -3, 4]
      node: {type: flow, config: {flow: child, arguments: {n: "{{ item }}"}}, on_error: continue}
""",
    "map_given.yaml": """
name: map_given
input_schema: {type: object, properties: {items: {}}}
nodes:
  - id: each
    type: map
    config: {items: "{{ input['items'] }}", node: {type: transform, config: {value: "{{ item }}"}}}
""",
    "chain.yaml": "\n---\n",  # replaced by the nine files of the chain below
}
for n in range(1, 10):
    target = (
        f"{{id: next, type: flow, config: {{flow: chain{n + 1}}}}}"
        if n < 9
        else "{id: end, type: transform, config: {value: 9}}"
    )
    FLOWS[f"chain{n}.yaml"] = f"name: chain{n}\nnodes:\n  - {target}\n"
del FLOWS["chain.yaml"]


@dataclass
class Deck:
    url: str  # the MCP endpoint of the flowdeck under test
    db_url: str
    helper: str  # the MCP endpoint of the second flowdeck


@pytest.fixture(scope="module")
def database_url(module_database_url: str) -> str:
    """The module's tests share one server, on one database of each kind."""
    return module_database_url


@pytest.fixture(scope="module")
def deck(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deck]:
    folder = tmp_path_factory.mktemp("composition")
    helper_flows = folder / "helper"
    helper_flows.mkdir()
    for name, text in HELPER_FLOWS.items():
        (helper_flows / name).write_text(text)
    flows = folder / "flows"
    flows.mkdir()
    for name, text in FLOWS.items():
        (flows / name).write_text(text)
    helper_settings = Settings(database_url=f"sqlite:///{folder / 'helper.db'}")
    with everything_http() as http_url, served(helper_settings, [EXAMPLES, helper_flows]) as helper:
        servers = servers_file(
            folder,
            {
                "everything": everything_stdio(),
                "everything_http": {"url": http_url},
                "helper": {"url": f"{helper}/mcp"},
            },
        )
        settings = Settings(database_url=database_url, mcp_servers=servers)
        with served(settings, [flows]) as base:
            yield Deck(f"{base}/mcp", database_url, f"{helper}/mcp")


async def call(url: str, tool: str, arguments: dict[str, Any], **kwargs: Any) -> types.CallToolResult:
    async with Client(url, **kwargs) as client:
        return await client.call_tool(tool, arguments)


def record(db: Engine, result: types.CallToolResult) -> Execution:
    return get_execution(db, result.meta["flowdeck/execution_id"])


def step(execution: Execution, node_id: str) -> Any:
    return next(s for s in execution.steps if s.node_id == node_id)


# ---- mcp nodes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("server", ["everything", "everything_http"])
async def test_mcp_node_outputs_text_json_structured_or_content(deck: Deck, db: Engine, server: str) -> None:
    async with Client(deck.url) as client:
        echo = await client.call_tool(
            "call_tool", {"server": server, "tool": "echo", "arguments": {"message": "hi"}}
        )
        structured = await client.call_tool(
            "call_tool",
            {"server": server, "tool": "get-structured-content", "arguments": {"location": "Chicago"}},
        )
        image = await client.call_tool("call_tool", {"server": server, "tool": "get-tiny-image"})
    assert not echo.is_error, echo.content
    assert step(record(db, echo), "call").output == "Echo: hi"
    assert step(record(db, echo), "call").remote.server == server
    assert set(step(record(db, structured), "call").output) == {"temperature", "conditions", "humidity"}
    items = step(record(db, image), "call").output
    assert [item["type"] for item in items] == ["text", "image", "text"]
    assert items[1]["mimeType"] == "image/png"


async def test_an_unknown_tool_on_the_remote_fails_the_node_with_its_reason(deck: Deck, db: Engine) -> None:
    result = await call(deck.url, "call_tool", {"server": "everything", "tool": "no-such-tool"})
    assert result.is_error
    failed = step(record(db, result), "call")
    assert failed.status == "error"
    assert failed.error.startswith("everything/no-such-tool: ") or failed.error.startswith("everything: ")
    assert "no-such-tool" in failed.error


async def test_a_second_flowdeck_is_a_remote_whose_execution_is_linked(deck: Deck, db: Engine) -> None:
    ok = await call(
        deck.url, "call_tool", {"server": "helper", "tool": "hello", "arguments": {"name": "Ada"}}
    )
    assert ok.structured_content == {"greeting": "Hello, Ada!", "language": "en"}
    called = step(record(db, ok), "call")
    assert called.output == {"greeting": "Hello, Ada!", "language": "en"}
    remote_id = called.remote.execution_id
    helper = await call(deck.helper, "hello", {"name": "check"})  # the helper records what it ran
    assert remote_id is not None and remote_id != helper.meta["flowdeck/execution_id"]

    failed = await call(
        deck.url, "call_tool", {"server": "helper", "tool": "charge_card", "arguments": {"amount": 5000}}
    )
    assert failed.is_error
    node = step(record(db, failed), "call")
    assert node.error == (
        "helper/charge_card: charge_card failed at node 'charge': amount 5000 EUR is over the 1000 limit"
    )
    assert node.remote.execution_id is not None


async def test_a_stdio_server_killed_between_two_calls_is_started_again(
    deck: Deck, db: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    first = await call(
        deck.url, "call_tool", {"server": "everything", "tool": "echo", "arguments": {"message": "1"}}
    )
    assert not first.is_error
    with caplog.at_level(logging.WARNING, logger="flowdeck.remote"):
        assert kill_stdio_servers(), "no stdio server was running"
        await eventually(lambda: "closed its connection" in caplog.text)
    second = await call(
        deck.url, "call_tool", {"server": "everything", "tool": "echo", "arguments": {"message": "2"}}
    )
    assert not second.is_error, second.content
    assert step(record(db, second), "call").output == "Echo: 2"


async def test_calls_over_http_keep_their_connection() -> None:
    """The SDK closes a call's event stream before the server ends it; unread, that body would cost
    the connection, a new one per call."""
    with everything_http() as url:
        port = int(url.split(":")[2].split("/")[0])
        before = tcp_connections_to(port)  # the readiness probe's, and any older one to that port
        remote = RemoteTools({"everything": HttpServer(url=url)})
        try:
            for n in range(30):
                reply = await remote.call(
                    "everything", "echo", {"message": str(n)}, on_progress=lambda *_: None
                )
                assert reply.content == [{"type": "text", "text": f"Echo: {n}"}]
            # a few (the calls', the session's opening ones), not one a call: 30 more without the drain
            assert tcp_connections_to(port) - before <= 10
        finally:
            await remote.close()


async def test_a_remote_that_hangs_is_bounded_and_cancelled_on_the_remote(deck: Deck, db: Engine) -> None:
    started = time.monotonic()
    result = await call(deck.url, "hang", {})
    assert time.monotonic() - started < 10
    assert result.is_error
    node = step(record(db, result), "wait")
    assert node.error == "timed out after 1 s"
    assert node.remote.execution_id is None  # the remote never answered, so it never said its id
    base = deck.helper.rsplit("/mcp", 1)[0]

    def helper_cancelled() -> bool:
        items = httpx.get(f"{base}/api/executions", params={"per_page": 5}).json()["items"]  # its own records
        slow = [item for item in items if item["flow_name"] == "slow_report"]
        return bool(slow) and slow[0]["status"] == "error" and slow[0]["error_type"] == "cancelled"

    await eventually(helper_cancelled, timeout_s=15)


async def test_retries_until_the_remote_works_and_records_every_try(deck: Deck, db: Engine) -> None:
    with flaky_http(failures=2) as (url, answered):
        result = await call(deck.url, "retry_flaky", {"url": url})
    assert not result.is_error, result.content
    assert answered == [503, 503, 200]
    node = step(record(db, result), "call")
    assert node.status == "fulfilled" and node.output == {"try": 3}
    assert [attempt.status for attempt in node.attempts] == ["error", "error", "fulfilled"]
    assert "HTTP 503" in node.attempts[0].error
    assert all(a.started_at <= a.ended_at for a in node.attempts)


# ---- flow nodes ------------------------------------------------------------------------------------


async def test_a_flow_node_runs_a_child_execution_linked_both_ways(deck: Deck, db: Engine) -> None:
    result = await call(deck.url, "parent", {"n": 20})
    assert result.structured_content is None and result.content[0].text == "41"
    parent = record(db, result)
    node = step(parent, "run_child")
    child = get_execution(db, node.child_execution_id)
    assert child.transport == "flow" and child.flow_name == "child"
    assert child.parent.execution_id == parent.id and child.parent.node_id == "run_child"
    assert child.parent_execution_id == parent.id
    assert [c.id for c in parent.children] == [child.id]
    assert child.output == 40


async def test_a_failing_child_fails_the_node_with_its_own_words(deck: Deck, db: Engine) -> None:
    result = await call(deck.url, "parent", {"n": -2})
    assert result.is_error
    assert (
        result.content[0].text
        == "parent failed at node 'run_child': child failed at node 'check': negative: -2"
    )
    child = get_execution(db, step(record(db, result), "run_child").child_execution_id)
    assert child.status == "error" and child.error.node_id == "check"


async def test_a_chain_of_nine_flows_is_refused_at_the_ninth(deck: Deck, db: Engine) -> None:
    before = list_executions(db).total
    result = await call(deck.url, "chain1", {})
    assert result.is_error
    text = result.content[0].text
    assert "flows nest at most 8 deep: 'chain9' would be flow number 9 of this chain" in text
    assert list_executions(db).total == before + 8  # chain1 to chain8; chain9 never started
    deepest = record(db, result)
    for _ in range(7):
        deepest = get_execution(db, step(deepest, "next").child_execution_id)
    assert deepest.flow_name == "chain8" and step(deepest, "next").child_execution_id is None


async def test_cancelling_a_parent_over_mcp_cancels_its_child(deck: Deck, db: Engine) -> None:
    async with Client(deck.url, mode="legacy") as client, anyio.create_task_group() as group:
        group.start_soon(client.call_tool, "slow_parent", {})
        await eventually(lambda: _running_child(db) is not None)
        group.cancel_scope.cancel()
    child_id = _running_child(db) or ""
    await eventually(lambda: get_execution(db, child_id).status == "error")
    child = get_execution(db, child_id)
    assert (child.error.type, child.error.message) == ("cancelled", "cancelled: parent cancelled")
    parent = get_execution(db, child.parent.execution_id)
    await eventually(lambda: get_execution(db, parent.id).status == "error")
    assert (get_execution(db, parent.id).error.type, get_execution(db, parent.id).error.message) == (
        "cancelled",
        "cancelled by the client",
    )


def _running_child(db: Engine) -> str | None:
    pending = [item for item in list_executions(db, per_page=10).items if item.flow_name == "slow_child"]
    return pending[0].id if pending else None


async def test_a_parents_timeout_reaches_its_child(deck: Deck, db: Engine) -> None:
    started = time.monotonic()
    result = await call(deck.url, "short_parent", {})
    assert time.monotonic() - started < 10
    parent = record(db, result)
    assert parent.error.type == "timeout" and parent.error.node_id == "run_child"
    child = get_execution(db, step(parent, "run_child").child_execution_id)
    await eventually(lambda: get_execution(db, child.id).status == "error")
    ended = get_execution(db, child.id).error  # the parent's timer ends it: no race of two timers
    assert (ended.type, ended.message) == ("cancelled", "cancelled: parent timed out")


# ---- map nodes -------------------------------------------------------------------------------------


async def test_a_map_of_200_fails_at_item_17_cancels_the_rest_and_records_each(
    deck: Deck, db: Engine
) -> None:
    result = await call(deck.url, "map200", {})
    assert result.is_error
    assert "map200 failed at node 'each': item 17: " in result.content[0].text
    node = step(record(db, result), "each")
    assert [item.index for item in node.items] == list(range(200))
    assert node.items[17].status == "error" and "nothing_here" in node.items[17].error
    assert all(item.status == "fulfilled" for item in node.items[:17])
    assert all(item.status == "skipped" for item in node.items[17 + 8 :])
    assert all(item.status != "pending" for item in node.items)


async def test_a_map_that_continues_on_error_outputs_every_item_in_order(deck: Deck, db: Engine) -> None:
    result = await call(deck.url, "map200_continue", {})
    assert not result.is_error, result.content
    node = step(record(db, result), "each")
    assert node.status == "fulfilled"
    assert [out for i, out in enumerate(node.output) if i != 17] == [i * 10 for i in range(200) if i != 17]
    assert node.output[17]["error"]["type"] == "node_error"
    assert node.items[17].status == "error"


async def test_outputs_keep_the_item_order_whatever_finishes_first(deck: Deck, db: Engine) -> None:
    result = await call(deck.url, "map_ordered", {})
    node = step(record(db, result), "each")
    assert [out["slept_s"] for out in node.output] == [0.1, 0.02, 0.08, 0.04, 0.06]
    ends = [item.ended_at for item in node.items]
    assert ends[1] < ends[3] < ends[4] < ends[2] < ends[0]  # they ran together


async def test_a_map_of_flows_records_a_child_per_item(deck: Deck, db: Engine) -> None:
    result = await call(deck.url, "map_of_flows", {})
    parent = record(db, result)
    node = step(parent, "each")
    assert node.output[:2] == [2, 4] and node.output[3] == 8
    assert node.output[2]["error"]["message"] == "child failed at node 'check': negative: -3"
    children = [item.child_execution_id for item in node.items]
    assert all(children) and [c.id for c in parent.children] == children
    assert get_execution(db, children[2]).status == "error"


@pytest.mark.parametrize(
    ("items", "message"), [("abc", "items must be a list, not str"), ({"a": 1}, "not dict")]
)
async def test_items_that_are_not_a_list_fail_the_node(
    deck: Deck, db: Engine, items: Any, message: str
) -> None:
    result = await call(deck.url, "map_given", {"items": items})
    assert result.is_error
    assert message in step(record(db, result), "each").error


async def test_progress_tells_the_items_and_the_tries(deck: Deck) -> None:
    seen: list[str | None] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message)

    async with Client(deck.url) as client:
        await client.call_tool("map_ordered", {}, progress_callback=on_progress)
        with flaky_http(failures=1) as (url, _):
            await client.call_tool("retry_flaky", {"url": url}, progress_callback=on_progress)
    assert "each [5/5]" in seen
    assert "call (try 2)" in seen


async def test_the_remotes_progress_is_passed_on(deck: Deck) -> None:
    seen: list[str | None] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message)

    arguments = {
        "server": "everything",
        "tool": "trigger-long-running-operation",
        "arguments": {"duration": 0.6, "steps": 3},
    }
    async with Client(deck.url) as client:
        result = await client.call_tool("call_tool", arguments, progress_callback=on_progress)
    assert not result.is_error, result.content
    assert [m for m in seen if m and m.startswith("call [")] == ["call [1/3]", "call [2/3]", "call [3/3]"]
    assert seen[-1] == "call"  # then the node itself, done
