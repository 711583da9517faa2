"""Exposed servers with real parts: the reference "everything" server over stdio and streamable
HTTP, and a second flowdeck, have their tools served by flowdeck (``<prefix>__<tool>``) and every
call recorded; the list follows the remotes. One flowdeck serves the module, on each kind of
database."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client, types
from sqlalchemy import Engine

from flowdeck import exposure
from flowdeck.errors import InvalidServers
from flowdeck.records import Execution
from flowdeck.remote import RemoteTools, StdioServer, load_servers
from flowdeck.settings import Settings
from flowdeck.states import Status
from flowdeck.store import database
from flowdeck.store.flows import find_live_flow
from flowdeck.store.reads import Filter, get_execution, list_executions
from tests.support import EXAMPLES
from tests.support.cli import flowdeck
from tests.support.postgres import free_port
from tests.support.processes import stdio_params
from tests.support.remotes import everything_http, everything_stdio, kill_stdio_servers, servers_file
from tests.support.server import eventually, served

ODD_TOOLS = Path(__file__).parent / "support" / "odd_tools.py"

VAULT = """
name: vault
description: Opens the vault with a token.
input_schema:
  type: object
  properties: {user: {type: string}, token: {type: string, writeOnly: true}}
  required: [user, token]
nodes:
  - {id: open, type: transform, config: {value: "opened for {{ input.user }}"}}
"""

MINE = """
name: mine
description: A flow of the deck's own, served beside the exposed tools.
nodes:
  - {id: one, type: transform, config: {value: 1}}
"""


@dataclass
class Deck:
    url: str  # the MCP endpoint of the flowdeck under test
    base: str
    db_url: str
    helper: str  # the base URL of the second flowdeck


@pytest.fixture(scope="module")
def database_url(module_database_url: str) -> str:
    return module_database_url


@pytest.fixture(scope="module")
def deck(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deck]:
    folder = tmp_path_factory.mktemp("exposure")
    (folder / "helper").mkdir()
    (folder / "helper" / "vault.yaml").write_text(VAULT)
    (folder / "flows").mkdir()
    (folder / "flows" / "mine.yaml").write_text(MINE)
    helper_settings = Settings(database_url=f"sqlite:///{folder / 'helper.db'}")
    with everything_http() as http_url, served(helper_settings, [EXAMPLES, folder / "helper"]) as helper:
        servers = servers_file(
            folder,
            {
                "everything": {**everything_stdio(), "expose": True},
                "web": {"url": http_url, "expose": True},
                "helper": {"url": f"{helper}/mcp", "expose": True, "prefix": "deck"},
            },
        )
        settings = Settings(database_url=database_url, mcp_servers=servers)
        with served(settings, [folder / "flows"]) as base:
            yield Deck(f"{base}/mcp", base, database_url, helper)


def record(db: Engine, result: types.CallToolResult) -> Execution:
    return get_execution(db, result.meta["flowdeck/execution_id"])


async def tool_names(url: str) -> set[str]:
    async with Client(url) as client:
        return {tool.name for tool in (await client.list_tools()).tools}


# ---- listing -----------------------------------------------------------------------------------


async def test_every_remote_tool_is_listed_as_the_remote_lists_it(deck: Deck) -> None:
    async with Client(deck.url, mode="legacy") as client:
        ours = {tool.name: tool for tool in (await client.list_tools()).tools}
    async with Client(everything_stdio_params()) as direct:
        theirs = {tool.name: tool for tool in (await direct.list_tools()).tools}
    assert "mine" in ours
    assert {name for name in ours if name.startswith("everything__")} == {f"everything__{n}" for n in theirs}
    assert {name for name in ours if name.startswith("web__")} == {f"web__{n}" for n in theirs}
    assert {"deck__hello", "deck__vault", "deck__charge_card"} <= set(ours)
    for name, remote in theirs.items():
        served_as = ours[f"everything__{name}"]
        assert served_as.title == remote.title
        assert served_as.description == remote.description
        assert served_as.input_schema == remote.input_schema
        assert served_as.output_schema == remote.output_schema
        assert served_as.annotations == remote.annotations
    assert ours["everything__get-structured-content"].output_schema is not None


def everything_stdio_params() -> Any:
    from mcp import StdioServerParameters

    entry = everything_stdio()
    return StdioServerParameters(command=entry["command"], args=entry["args"])


# ---- calls ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["everything", "web"])
async def test_calls_get_the_remotes_reply_and_are_recorded(deck: Deck, db: Engine, prefix: str) -> None:
    async with Client(deck.url) as client:
        echo = await client.call_tool(f"{prefix}__echo", {"message": "hi"})
        structured = await client.call_tool(f"{prefix}__get-structured-content", {"location": "Chicago"})
        image = await client.call_tool(f"{prefix}__get-tiny-image", {})
        bad = await client.call_tool(f"{prefix}__echo", {"message": 7})
    assert echo.is_error is False
    assert [item.text for item in echo.content] == ["Echo: hi"]  # as the remote said it, not as JSON
    execution = record(db, echo)
    assert execution.flow_name == f"{prefix}__echo"
    assert execution.status == "fulfilled"
    assert execution.initial_params == {"message": "hi"}
    assert execution.steps[0].node_type == "mcp"
    assert execution.steps[0].output == "Echo: hi"
    assert execution.steps[0].remote.tool == "echo"

    assert set(structured.structured_content) == {"temperature", "conditions", "humidity"}
    assert record(db, structured).steps[0].output == structured.structured_content
    assert [item.type for item in image.content] == ["text", "image", "text"]
    assert [item["type"] for item in record(db, image).steps[0].output] == ["text", "image", "text"]

    assert bad.is_error  # checked against the remote's schema before it is called
    assert "7 is not of type 'string'" in bad.content[0].text
    assert record(db, bad).error.type == "invalid_params"


async def test_a_remote_error_reaches_the_caller_and_is_recorded(deck: Deck, db: Engine) -> None:
    async with Client(deck.url) as client:
        failed = await client.call_tool("deck__charge_card", {"amount": 5000})
        ok = await client.call_tool("deck__hello", {"name": "Ada"})
    assert failed.is_error
    text = "charge_card failed at node 'charge': amount 5000 EUR is over the 1000 limit"
    assert failed.content[0].text == text  # the remote's own words
    execution = record(db, failed)
    assert execution.status == "error"
    assert execution.error.node_id == "call"
    assert execution.error.message == f"helper/charge_card: {text}"
    assert execution.steps[0].remote.execution_id is not None  # the helper's own record
    assert ok.structured_content == {"greeting": "Hello, Ada!", "language": "en"}
    assert ok.meta["flowdeck/execution_id"] == record(db, ok).id


async def test_secrets_are_redacted_by_the_remotes_schema(deck: Deck, db: Engine) -> None:
    async with Client(deck.url) as client:
        result = await client.call_tool("deck__vault", {"user": "ada", "token": "s3cr3t"})
    assert result.structured_content is None and result.content[0].text == '"opened for ada"'
    assert record(db, result).initial_params == {"user": "ada", "token": "***"}


async def test_progress_and_cancel_pass_both_ways(deck: Deck, db: Engine) -> None:
    seen: list[str | None] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message)

    async with Client(deck.url) as client:
        result = await client.call_tool(
            "everything__trigger-long-running-operation",
            {"duration": 0.6, "steps": 3},
            progress_callback=on_progress,
        )
        assert not result.is_error, result.content
        assert [m for m in seen if m and m.startswith("call [")] == ["call [1/3]", "call [2/3]", "call [3/3]"]

        async def cancelled_call() -> None:
            await client.call_tool("everything__trigger-long-running-operation", {"duration": 30, "steps": 3})

        async with anyio.create_task_group() as group:
            group.start_soon(cancelled_call)
            await eventually(lambda: running(db, "everything__trigger-long-running-operation"))
            group.cancel_scope.cancel()
    await eventually(lambda: not running(db, "everything__trigger-long-running-operation"))
    flow_id = find_live_flow(db, "everything__trigger-long-running-operation").id
    latest = list_executions(db, Filter(flow_id=flow_id), per_page=1).items[0]
    assert get_execution(db, latest.id).error.type == "cancelled"


def running(db: Engine, flow: str) -> bool:
    where = Filter(flow_id=find_live_flow(db, flow).id, status=Status.PENDING)
    return list_executions(db, where).total > 0


async def test_a_stdio_remote_killed_mid_call_is_a_recorded_error_and_the_next_call_works(
    deck: Deck, db: Engine
) -> None:
    async with Client(deck.url) as client:

        async def long_call() -> types.CallToolResult:
            return await client.call_tool(
                "everything__trigger-long-running-operation", {"duration": 20, "steps": 20}
            )

        call = asyncio.ensure_future(long_call())
        await eventually(lambda: running(db, "everything__trigger-long-running-operation"))
        assert kill_stdio_servers(), "no stdio server was running"
        killed = await asyncio.wait_for(call, 15)
        after = await client.call_tool("everything__echo", {"message": "again"})
    assert killed.is_error
    execution = record(db, killed)
    assert execution.status == "error" and execution.error.node_id == "call"
    assert execution.error.message.startswith("everything: ")
    assert [item.text for item in after.content] == ["Echo: again"]


# ---- the catalog and the API -----------------------------------------------------------------------


def exposed_flows(deck: Deck, *names: str) -> dict[str, Any]:
    """The live flows by name, once the ones named are made (the first listings take a moment)."""
    deadline = time.monotonic() + 30
    while True:
        flows = {flow["name"]: flow for flow in httpx.get(f"{deck.base}/api/flows").json()["items"]}
        if set(names) <= set(flows) or time.monotonic() > deadline:
            return flows
        time.sleep(0.1)


def test_exposed_flows_are_marked_and_read_only(deck: Deck, db: Engine) -> None:
    flows = exposed_flows(deck, "everything__echo", "web__echo")
    with httpx.Client(base_url=deck.base) as http:
        echo = flows["everything__echo"]
        assert echo["exposed"] is True
        assert echo["exposed_from"] == {"server": "everything", "tool": "echo"}
        assert echo["nodes"] == [
            {
                "id": "call",
                "type": "mcp",
                "config": {"server": "everything", "tool": "echo", "arguments": "{{ input }}"},
            }
        ]
        assert flows["mine"]["exposed"] is False
        changed = {key: echo[key] for key in ("name", "input_schema", "nodes")} | {"description": "mine now"}
        refused = http.put(f"/api/flows/{echo['id']}", json=changed)
        assert refused.status_code == 409
        assert (
            "made by flowdeck from the tool 'echo' of the MCP server 'everything'" in refused.json()["detail"]
        )
        kept = http.delete(f"/api/flows/{echo['id']}")
        assert kept.status_code == 409
        assert "stop exposing the server" in kept.json()["detail"]
        taken = http.post("/api/flows", json={"name": "web__echo", "nodes": []})
        assert taken.status_code == 409
        assert "taken by the tool 'echo' of the MCP server 'web'" in taken.json()["detail"]
        page = http.get("/").text
        assert 'data-testid="exposed-badge"' in page
    assert find_live_flow(db, "everything__echo").description == "Echoes back the input string"


# ---- following the remote -----------------------------------------------------------------------


async def test_a_tool_added_on_the_remote_is_served_and_announced(deck: Deck) -> None:
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    flow = {"name": "newcomer", "nodes": [{"id": "n", "type": "transform", "config": {"value": 2}}]}
    async with Client(deck.url, mode="legacy", message_handler=on_message) as client:
        assert "deck__newcomer" not in {tool.name for tool in (await client.list_tools()).tools}
        with httpx.Client(base_url=deck.helper) as helper:
            made = helper.post("/api/flows", json=flow)
            assert made.status_code == 201
            with anyio.fail_after(10):
                await changed.wait()  # heard from the helper, without anyone listing
            assert "deck__newcomer" in {tool.name for tool in (await client.list_tools()).tools}
            result = await client.call_tool("deck__newcomer", {})
            assert result.content[0].text == "2"
            changed = anyio.Event()
            assert helper.delete(f"/api/flows/{made.json()['id']}").status_code == 204
            with anyio.fail_after(10):
                await changed.wait()
        assert "deck__newcomer" not in {tool.name for tool in (await client.list_tools()).tools}


def test_a_servers_prefixes_must_fit_and_differ(tmp_path: Path) -> None:
    path = servers_file(
        tmp_path,
        {
            "my tools": {"command": "x", "expose": True},
            "a": {"command": "x", "expose": True, "prefix": "same"},
            "b": {"url": "http://127.0.0.1:1/mcp", "expose": True, "prefix": "same"},
            "c": {"command": "x", "expose": True, "prefix": "no.dots"},
            "quiet name": {"command": "x"},  # not exposed: its name is never a prefix
        },
    )
    with pytest.raises(InvalidServers) as refused:
        load_servers(path)
    assert [str(problem) for problem in refused.value.problems] == [
        "mcpServers.c.prefix: must fit a tool name: 1 to 64 letters, digits, _ or -",
        "mcpServers.my tools.prefix: the server's name does not fit a tool name (letters, digits, _ and -):"
        " give a prefix",
        "mcpServers.b.prefix: the prefix 'same' is also the prefix of 'a': give each its own",
    ]


async def test_names_that_clash_or_do_not_fit_are_skipped_with_a_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    odd = {"command": sys.executable, "args": [str(ODD_TOOLS)], "expose": True}
    servers = servers_file(tmp_path, {"odd": {**odd, "prefix": "p"}, "odder": {**odd, "prefix": "p_"}})
    (tmp_path / "p__fine.yaml").write_text("name: p__fine\nnodes: []\n")
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'deck.db'}", mcp_servers=servers)
    with (
        caplog.at_level(logging.ERROR, logger="flowdeck.exposure"),
        served(settings, [tmp_path / "p__fine.yaml"]) as base,
    ):
        names = await tool_names(f"{base}/mcp")
        async with Client(f"{base}/mcp") as client:
            answer = await client.call_tool("p___fine", {})
            await client.call_tool("p__grow", {})  # odd now has a tool more, and says nothing
            grown = {tool.name for tool in (await client.list_tools()).tools}
            broken = await client.call_tool("p__bad_schema", {"a": "b"})
    assert broken.is_error  # recorded, with the reason
    engine = database.open_database(settings.database_url)
    try:
        assert record(engine, broken).error.type == "invalid_params"
    finally:
        engine.dispose()
    assert (
        "invalid arguments: the input schema can't check them: missing ), unterminated"
        in broken.content[0].text
    )
    assert answer.content[0].text == "fine"
    assert answer.meta["io.modelcontextprotocol/serverInfo"]["name"] == "flowdeck"  # not the remote's
    assert "p__grown" not in names and "p__grown" in grown  # seen when a client lists the tools
    # p___x is odd's "_x" and odder's "x": the first listed keeps it
    assert {"p__fine", "p__x", "p___x", "p___fine"} <= names
    assert not any(name.startswith(("p__has", "p__nnn", "p___nnn")) for name in names)
    said = caplog.text
    assert (
        "the tool 'fine' of the MCP server 'odd' is not served as 'p__fine': the flow 'p__fine' has that name"
        in said
    )
    assert "the tool 'has space' of the MCP server 'odd' is not served: its name does not fit MCP's" in said
    assert "is longer than the 64 characters flowdeck keeps of a tool name" in said
    assert any(
        f"the tool {mine!r} of the MCP server {server!r} is not served as 'p___x': the tool {theirs!r} of the"
        f" MCP server {other!r} has that name" in said
        for mine, server, theirs, other in [("x", "odder", "_x", "odd"), ("_x", "odd", "x", "odder")]
    )


async def test_a_server_listing_too_many_tools_has_the_first_ones_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exposure, "MAX_TOOLS", 2)
    odd = {"command": sys.executable, "args": [str(ODD_TOOLS)], "expose": True}
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'deck.db'}", mcp_servers=servers_file(tmp_path, {"odd": odd})
    )
    with caplog.at_level(logging.ERROR, logger="flowdeck.exposure"), served(settings) as base:
        assert await tool_names(f"{base}/mcp") == {"odd__fine", "odd__x"}
    assert "the MCP server 'odd' lists 7 tools: the first 2 are served" in caplog.text


def test_the_flows_of_a_server_no_longer_exposed_may_be_deleted(deck: Deck, tmp_path: Path) -> None:
    """The CLI, given no servers file, finds the exposed flows leftovers: they may go; given the
    file that exposes their server, they may not."""
    exposed_flows(deck, "everything__get-sum")
    exposing = servers_file(tmp_path, {"everything": {**everything_stdio(), "expose": True}})
    refused = flowdeck(
        "flows", "delete", "everything__get-sum", database_url=deck.db_url, ok=False,
        FLOWDECK_MCP_SERVERS=str(exposing),
    )  # fmt: skip
    assert refused.exit_code == 1
    assert "which this server exposes: stop exposing the server" in refused.stderr
    gone = flowdeck("flows", "delete", "everything__get-sum", database_url=deck.db_url)
    assert gone.exit_code == 0, gone.stderr
    assert "deleted everything__get-sum" in gone.stdout


def test_flows_run_lists_an_exposed_server_not_served_yet(tmp_path: Path) -> None:
    servers = servers_file(tmp_path, {"everything": {**everything_stdio(), "expose": True}})
    database_url = f"sqlite:///{tmp_path / 'fresh.db'}"  # no server ever ran on it
    ran = flowdeck(
        "flows", "run", "everything__echo", "--args", '{"message": "from the CLI"}', "--servers", str(servers),
        database_url=database_url,
    )  # fmt: skip
    assert "Echo: from the CLI" in ran.stdout
    unknown = flowdeck(
        "flows", "run", "everything__nope", "--servers", str(servers), database_url=database_url, ok=False
    )  # fmt: skip
    assert unknown.exit_code == 1
    assert "no flow named 'everything__nope'" in unknown.stderr


async def test_a_2025_servers_change_notification_reaches_its_follower() -> None:
    """The everything server speaks the 2025 protocols only, and adds tools once a client is
    initialized, saying so by notifications/tools/list_changed."""
    remote = RemoteTools({"everything": StdioServer(**everything_stdio())})
    heard = asyncio.Event()
    remote.follow("everything", heard.set)
    try:
        assert await remote.list_tools("everything")
        await asyncio.wait_for(heard.wait(), 10)
    finally:
        await remote.close()


async def test_a_remote_down_at_start_is_served_once_it_comes_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    servers = servers_file(tmp_path, {"late": {"url": f"http://127.0.0.1:{port}/mcp", "expose": True}})
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'deck.db'}", mcp_servers=servers)
    with caplog.at_level(logging.WARNING, logger="flowdeck.exposure"), served(settings) as base:
        assert await tool_names(f"{base}/mcp") == set()
        assert "the MCP server 'late' is not served yet: late: cannot connect" in caplog.text
        remote = Settings(database_url=f"sqlite:///{tmp_path / 'late.db'}")
        with served(remote, [EXAMPLES], port=port):
            await eventually(lambda: "the MCP server 'late' answers" in caplog.text, timeout_s=30)
            assert "late__hello" in await tool_names(f"{base}/mcp")


async def test_a_call_right_after_a_start_waits_for_the_first_listing(tmp_path: Path) -> None:
    """A client that kept its tool list across a restart calls without listing first."""
    servers = servers_file(tmp_path, {"everything": {**everything_stdio(), "expose": True}})
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'deck.db'}", mcp_servers=servers)
    with served(settings) as base:
        async with Client(f"{base}/mcp") as client:
            result = await client.call_tool("everything__echo", {"message": "first"})
    assert [item.text for item in result.content] == ["Echo: first"]


async def test_flowdeck_mcp_over_stdio_serves_the_exposed_tools(database_url: str, tmp_path: Path) -> None:
    servers = servers_file(tmp_path, {"everything": {**everything_stdio(), "expose": True}})
    async with Client(stdio_params(database_url, "--servers", str(servers))) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        result = await client.call_tool("everything__echo", {"message": "over stdio"})
    assert "everything__echo" in names
    assert [item.text for item in result.content] == ["Echo: over stdio"]
    engine = database.open_database(database_url)
    try:
        execution = record(engine, result)
        assert execution.transport == "stdio"
        assert execution.steps[0].output == "Echo: over stdio"
    finally:
        engine.dispose()
