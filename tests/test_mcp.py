"""MCP over streamable HTTP with the SDK's own client, in both protocol generations."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from sqlalchemy import Engine

import flowdeck.mcp.server as mcp_server
from flowdeck.flowfiles import load_flow_text
from flowdeck.settings import Settings
from flowdeck.store.flows import delete_flow, find_live_flow, import_flow
from flowdeck.store.reads import Filter, get_execution, list_executions
from tests.support import EXAMPLES
from tests.support.postgres import Cluster
from tests.support.server import eventually, served

MODES = ["legacy", "auto"]


@pytest.fixture(scope="module")
def database_url(module_database_url: str) -> str:
    """The module's tests share one server, on one database of each kind."""
    return module_database_url


@pytest.fixture(scope="module")
def url(database_url: str) -> Iterator[str]:
    """One server for the module's tests, on their shared database."""
    with served(Settings(database_url=database_url), [EXAMPLES]) as base:
        yield f"{base}/mcp"


def client(url: str, mode: str, **kwargs: Any) -> Client:
    return Client(
        url, mode=mode, client_info=types.Implementation(name="test-client", version="9.9"), **kwargs
    )


def record_of(db: Engine, result: types.CallToolResult) -> Any:
    return get_execution(db, result.meta["flowdeck/execution_id"])


@pytest.mark.parametrize("mode", MODES)
async def test_tools_are_the_live_flows(url: str, mode: str) -> None:
    async with client(url, mode) as mcp:
        tools = {tool.name: tool for tool in (await mcp.list_tools()).tools}
    assert sorted(tools) == ["charge_card", "fetch_json", "hello", "order_quote", "slow_report"]
    hello = tools["hello"]
    assert hello.title == "Say hello"
    assert hello.description == "Greets someone by name, in the language asked for."
    assert hello.input_schema["required"] == ["name"]
    assert hello.input_schema["properties"]["language"]["default"] == "en"


async def test_legacy_sessions_hear_of_flows_created_and_deleted(url: str, db: Engine) -> None:
    heard: list[Any] = []
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            heard.append(message)
            changed.set()

    async with client(url, "legacy", message_handler=on_message) as mcp:
        assert mcp.server_capabilities.tools.list_changed is True
        await mcp.list_tools()
        # another process adds a flow: this server notices it by itself
        import_flow(db, load_flow_text("name: newcomer\nnodes: []\n").model_dump(exclude_none=True))
        with anyio.fail_after(10):
            await changed.wait()
        assert "newcomer" in [tool.name for tool in (await mcp.list_tools()).tools]
        changed = anyio.Event()
        delete_flow(db, find_live_flow(db, "newcomer").id)
        with anyio.fail_after(10):
            await changed.wait()
        assert "newcomer" not in [tool.name for tool in (await mcp.list_tools()).tools]
    assert len(heard) == 2


async def test_2026_clients_hear_of_changes_through_listen(url: str, db: Engine) -> None:
    async with client(url, "auto") as mcp:
        assert mcp.protocol_version == "2026-07-28"
        async with mcp.listen(tools_list_changed=True) as subscription:
            import_flow(db, load_flow_text("name: late\nnodes: []\n").model_dump(exclude_none=True))
            with anyio.fail_after(10):
                event = await subscription.__anext__()
            assert type(event).__name__ == "ToolsListChanged"
        assert "late" in [tool.name for tool in (await mcp.list_tools()).tools]


@pytest.mark.parametrize("mode", MODES)
async def test_a_fulfilled_call_and_its_record(url: str, db: Engine, mode: str) -> None:
    async with client(url, mode) as mcp:
        result = await mcp.call_tool(
            "order_quote", {"item": "pen", "quantity": 3, "unit_price": 2.5, "discount_code": "X"}
        )
    expected = {"item": "pen", "quantity": 3, "subtotal": 7.5, "total": 6.75}
    assert result.is_error is False
    assert result.structured_content == expected
    assert json.loads(result.content[0].text) == expected
    record = record_of(db, result)
    assert record.status == "fulfilled"
    assert record.initial_params == {"item": "pen", "quantity": 3, "unit_price": 2.5, "discount_code": "X"}
    assert [(s.node_id, s.status) for s in record.steps] == [
        ("subtotal", "fulfilled"),
        ("discount", "fulfilled"),
        ("total", "fulfilled"),
    ]
    assert record.data["nodes"]["discount"] == {"code": "X", "amount": 0.75}
    assert asdict(record.client) == {"name": "test-client", "version": "9.9"}
    assert record.transport == "http"
    assert record.output == expected


@pytest.mark.parametrize("mode", MODES)
async def test_a_non_object_output_is_json_text(url: str, mode: str) -> None:
    async with client(url, mode) as mcp:
        result = await mcp.call_tool("slow_report", {"topic": "tea", "pause_s": 0})
    assert result.structured_content is None
    assert json.loads(result.content[0].text) == "Report on tea, built in 0.0 s"


@pytest.mark.parametrize("mode", MODES)
async def test_a_failing_call_names_its_node(url: str, db: Engine, mode: str) -> None:
    async with client(url, mode) as mcp:
        result = await mcp.call_tool("charge_card", {"amount": 5000})
    assert result.is_error is True
    assert (
        result.content[0].text
        == "charge_card failed at node 'charge': amount 5000 EUR is over the 1000 limit"
    )
    record = record_of(db, result)
    assert asdict(record.error) == {
        "type": "node_error",
        "message": "amount 5000 EUR is over the 1000 limit",
        "node_id": "charge",
    }
    assert [s.node_id for s in record.steps] == ["check", "charge"]


@pytest.mark.parametrize("mode", MODES)
async def test_invalid_arguments_are_an_error_result_and_recorded(url: str, db: Engine, mode: str) -> None:
    async with client(url, mode) as mcp:
        result = await mcp.call_tool("hello", {"language": "de", "extra": [1]})
    assert result.is_error is True
    text = result.content[0].text
    assert text.startswith("hello failed: invalid arguments: ")
    assert "'name' is a required property" in text
    assert "language: 'de' is not one of ['en', 'fr', 'es']" in text
    record = record_of(db, result)
    assert record.error.type == "invalid_params"
    assert record.initial_params == {"language": "de", "extra": [1]}
    assert record.steps == []


@pytest.mark.parametrize("mode", MODES)
async def test_an_unknown_tool_is_a_protocol_error(url: str, mode: str, db: Engine) -> None:
    before = list_executions(db).total
    async with client(url, mode) as mcp:
        with pytest.raises(MCPError) as caught:
            await mcp.call_tool("no_such_flow", {})
    assert caught.value.error.code == types.INVALID_PARAMS
    assert "unknown tool 'no_such_flow'" in caught.value.error.message
    assert list_executions(db).total == before


@pytest.mark.parametrize("mode", MODES)
async def test_progress_once_per_node_in_order(url: str, mode: str) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with client(url, mode) as mcp:
        result = await mcp.call_tool("slow_report", {"pause_s": 0.05}, progress_callback=on_progress)
    assert result.is_error is False
    assert seen == [(1, 3, "gather"), (2, 3, "crunch"), (3, 3, "format")]


@pytest.mark.parametrize("mode", MODES)
async def test_a_long_node_sends_keep_alive_progress(
    url: str, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mcp_server, "KEEPALIVE_S", 0.2)
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with client(url, mode) as mcp:
        await mcp.call_tool("slow_report", {"pause_s": 0.5}, progress_callback=on_progress)
    keep_alive = [item for item in seen if item[2] and item[2].endswith("running")]
    assert keep_alive and keep_alive[0][2] == "gather running"
    progress = [item[0] for item in seen]
    assert progress == sorted(progress) and len(set(progress)) == len(progress)  # always growing
    assert all(0 < value < 1 for value, _, message in keep_alive if message == "gather running")
    assert seen[-1] == (3, 3, "format")


@pytest.mark.parametrize("mode", MODES)
async def test_cancelling_a_call_records_cancelled_and_the_session_goes_on(
    url: str, db: Engine, mode: str
) -> None:
    async with client(url, mode) as mcp:
        async with anyio.create_task_group() as group:
            group.start_soon(mcp.call_tool, "slow_report", {"pause_s": 30})
            await eventually(lambda: list_executions(db, Filter(status="pending")).items)
            await anyio.sleep(0.2)
            group.cancel_scope.cancel()
        await eventually(lambda: not list_executions(db, Filter(status="pending")).total)
        record = get_execution(db, list_executions(db).items[0].id)
        assert asdict(record.error) == {
            "type": "cancelled",
            "message": "cancelled by the client",
            "node_id": "gather",
        }
        again = await mcp.call_tool("hello", {"name": "still here"})
        assert again.structured_content == {"greeting": "Hello, still here!", "language": "en"}


async def test_50_concurrent_calls_from_several_clients(url: str, db: Engine) -> None:
    results: dict[int, types.CallToolResult] = {}
    before = list_executions(db).total

    async def one_client(first: int, mode: str) -> None:
        async with client(url, mode) as mcp, anyio.create_task_group() as group:
            for i in range(first, first + 10):

                async def call(i: int = i) -> None:
                    results[i] = await mcp.call_tool(
                        "order_quote", {"item": f"item-{i}", "unit_price": i, "quantity": 2}
                    )

                group.start_soon(call)

    async with anyio.create_task_group() as group:
        for n, first in enumerate(range(0, 50, 10)):
            group.start_soon(one_client, first, MODES[n % 2])
    assert sorted(results) == list(range(50))
    ids = {result.meta["flowdeck/execution_id"] for result in results.values()}
    assert len(ids) == 50
    assert list_executions(db).total == before + 50
    for i, result in results.items():
        assert result.structured_content == {
            "item": f"item-{i}",
            "quantity": 2,
            "subtotal": 2 * i,
            "total": 2 * i,
        }
        record = record_of(db, result)
        assert record.initial_params == {"item": f"item-{i}", "unit_price": i, "quantity": 2}
        assert record.output == result.structured_content


@pytest.fixture
def secured(settings: Settings) -> Iterator[str]:
    with served(settings.model_copy(update={"auth_token": "s3cret-token"}), [EXAMPLES]) as base:
        yield base


def _with_token(url: str, token: str, mode: str) -> Client:
    transport = streamable_http_client(
        url, http_client=create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    )
    return Client(transport, mode=mode)


@pytest.mark.parametrize("mode", MODES)
async def test_the_right_token_opens_mcp(secured: str, mode: str) -> None:
    async with _with_token(f"{secured}/mcp", "s3cret-token", mode) as mcp:
        result = await mcp.call_tool("hello", {"name": "key holder"})
    assert result.structured_content["greeting"] == "Hello, key holder!"


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret-token"}]
)
async def test_no_token_or_a_wrong_one_is_refused(secured: str, headers: dict[str, str]) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    async with httpx2.AsyncClient() as http:
        response = await http.post(
            f"{secured}/mcp", json=body, headers={**headers, "Accept": "application/json, text/event-stream"}
        )
        health = await http.get(f"{secured}/health")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "unauthorized" in response.json()["detail"]
    assert health.status_code == 200


async def test_a_wrong_token_fails_the_sdk_client(secured: str, db: Engine) -> None:
    before = list_executions(db).total
    with pytest.raises(BaseExceptionGroup) as caught:
        async with _with_token(f"{secured}/mcp", "wrong", "legacy") as mcp:
            await mcp.call_tool("hello", {"name": "intruder"})
    assert caught.group_contains(MCPError)
    assert list_executions(db).total == before


async def test_a_foreign_origin_or_host_is_refused(url: str) -> None:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "x", "version": "1"},
        },
    }
    accept = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    async with httpx2.AsyncClient() as http:
        evil_origin = await http.post(url, json=body, headers={**accept, "Origin": "http://evil.example"})
        evil_host = await http.post(url, json=body, headers={**accept, "Host": "evil.example"})
        good = await http.post(url, json=body, headers={**accept, "Origin": url.rsplit("/mcp", 1)[0]})
    assert evil_origin.status_code == 403
    assert evil_host.status_code == 421
    assert good.status_code == 200


async def test_stateless_mode_serves_both_generations_with_progress(settings: Settings, db: Engine) -> None:
    with served(settings, [EXAMPLES], stateless=True) as base:
        for mode in MODES:
            seen: list[str | None] = []

            async def on_progress(
                progress: float, total: float | None, message: str | None, seen: list = seen
            ) -> None:
                seen.append(message)

            async with client(f"{base}/mcp", mode) as mcp:
                result = await mcp.call_tool(
                    "slow_report", {"topic": mode, "pause_s": 0}, progress_callback=on_progress
                )
            assert record_of(db, result).status == "fulfilled"
            assert seen == ["gather", "crunch", "format"]


@pytest.mark.postgres
async def test_a_database_that_goes_away_refuses_calls_cleanly_and_comes_back(
    probe: Any, pg_cluster: Cluster, pg_url: str, tmp_path: Path
) -> None:
    cluster = pg_cluster
    flows = tmp_path / "probed.yaml"
    flows.write_text("name: probed\nnodes:\n  - {id: p, type: probe, config: {value: ran}}\n")
    with served(Settings(database_url=pg_url), [flows]) as base:
        async with client(f"{base}/mcp", "legacy") as mcp:
            assert (await mcp.call_tool("probed", {})).structured_content is None
            with cluster.stopped():
                refused = await mcp.call_tool("probed", {})
                assert refused.is_error is True
                assert refused.content[0].text == "probed was not run: the execution could not be recorded"
                assert len(probe.calls) == 1
                async with httpx2.AsyncClient(base_url=base) as http:  # the API and the pages say so
                    api, page = await http.get("/api/executions"), await http.get("/executions")
                    assert (api.status_code, api.json()) == (
                        503,
                        {"detail": "the database is unavailable: try again shortly"},
                    )
                    assert (page.status_code, page.headers["retry-after"]) == (503, "5")
                    assert "The database is unavailable" in page.text
                    assert "Traceback" not in page.text and str(cluster.port) not in page.text
                    cluster.start()
                    back = await mcp.call_tool("probed", {})
                    assert back.is_error is False
                    assert len(probe.calls) == 2
                    assert (await http.get("/api/executions")).json()["total"] == 2


async def test_big_arguments_are_cut_in_the_record_and_huge_ones_refused(url: str, db: Engine) -> None:
    before = list_executions(db).total
    big = "x" * (3 * 1024 * 1024)
    async with client(url, "legacy") as mcp:
        result = await mcp.call_tool("hello", {"name": "Ada", "blob": big})
    assert result.structured_content["greeting"] == "Hello, Ada!"
    record = record_of(db, result)
    assert record.params_truncated is True
    assert record.initial_params["$truncated"]["bytes"] > 3 * 1024 * 1024
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "hello", "arguments": {"name": "y" * (17 * 1024 * 1024)}},
    }
    async with httpx2.AsyncClient() as http:
        response = await http.post(
            url,
            json=body,
            headers={"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2026-07-28"},
        )
    assert response.status_code == 413
    assert list_executions(db).total == before + 1


def test_a_huge_api_body_is_refused(url: str) -> None:
    base = url.rsplit("/mcp", 1)[0]
    response = httpx2.post(
        f"{base}/api/flows",
        content=b"[" + b"1," * (9 * 1024 * 1024) + b"1]",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.text == "Content Too Large"
