"""``flowdeck mcp`` over stdio, as real processes a desktop client starts; ``flowdeck call`` against a
served flowdeck."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, types
from sqlalchemy import Engine

from flowdeck.flowfiles import load_flow_text
from flowdeck.settings import Settings
from flowdeck.store.flows import import_flow
from flowdeck.store.reads import get_execution
from tests.support import EXAMPLES
from tests.support.cli import flowdeck
from tests.support.postgres import free_port
from tests.support.processes import flowdeck_env, run_flowdeck, stdio_params
from tests.support.server import served


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_stdio_lists_calls_and_records(database_url: str, db: Engine, mode: str) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    # several paths after one --flows
    paths = [str(EXAMPLES / f"{name}.yaml") for name in ("hello", "slow_report", "charge_card")]
    params = stdio_params(database_url, "--flows", *paths)
    info = types.Implementation(name="desktop-agent", version="3.1")
    async with Client(params, mode=mode, client_info=info) as mcp:
        names = [tool.name for tool in (await mcp.list_tools()).tools]
        result = await mcp.call_tool("slow_report", {"pause_s": 0.01}, progress_callback=on_progress)
        failed = await mcp.call_tool("charge_card", {"amount": 2000})
        # the agent reads why its call failed, by the id in _meta
        why = await mcp.read_resource(f"flowdeck://executions/{failed.meta['flowdeck/execution_id']}")
    assert json.loads(why.contents[0].text)["error"]["node_id"] == "charge"
    assert sorted(names) == ["charge_card", "hello", "slow_report"]
    assert seen == [(1, 3, "gather"), (2, 3, "crunch"), (3, 3, "format")]
    record = get_execution(db, result.meta["flowdeck/execution_id"])
    assert record.transport == "stdio"
    assert asdict(record.client) == {"name": "desktop-agent", "version": "3.1"}
    assert record.status == "fulfilled"
    assert failed.is_error and failed.content[0].text.startswith("charge_card failed at node 'charge'")


async def test_stdio_sessions_hear_of_new_flows(database_url: str, db: Engine) -> None:
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async with Client(stdio_params(database_url), mode="legacy", message_handler=on_message) as mcp:
        assert [tool.name for tool in (await mcp.list_tools()).tools] == []
        import_flow(db, load_flow_text("name: fresh\nnodes: []\n").model_dump(exclude_none=True))
        with anyio.fail_after(15):
            await changed.wait()
        assert [tool.name for tool in (await mcp.list_tools()).tools] == ["fresh"]


def test_stdio_prints_nothing_but_protocol(database_url: str) -> None:
    done = run_flowdeck("mcp", "--flows", str(EXAMPLES), env=flowdeck_env(database_url), input="")
    assert done.stdout == ""


def test_stdio_refuses_bad_flows_before_serving(database_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nnodes:\n  - {id: a, type: nope}\n")
    done = run_flowdeck("mcp", "--flows", str(bad), env=flowdeck_env(database_url), input="")
    assert done.returncode == 1
    assert "nodes[0].type: unknown node type 'nope'" in done.stderr
    assert done.stdout == ""


@pytest.fixture
def server(settings: Settings) -> Iterator[str]:
    with served(settings, [EXAMPLES]) as base:
        yield f"{base}/mcp"


def test_flowdeck_call_prints_progress_result_and_id(server: str, db: Engine, database_url: str) -> None:
    done = flowdeck(
        "call", "slow_report", "topic=tea", "pause_s=0.05", "--url", server, database_url=database_url
    )
    assert done.stderr.splitlines() == ["[1/3] gather", "[2/3] crunch", "[3/3] format"]
    lines = done.stdout.strip().splitlines()
    assert lines[0] == '"Report on tea, built in 0.1 s"'
    execution_id = lines[-1].split()[1]
    assert lines[-1] == f"execution {execution_id} fulfilled"
    record = get_execution(db, execution_id)
    assert record.initial_params == {"topic": "tea", "pause_s": 0.05}
    assert asdict(record.client) == {"name": "flowdeck-call", "version": "1"}


def test_flowdeck_call_types_values_by_the_schema(server: str, db: Engine, database_url: str) -> None:
    arguments = ["order_quote", "item=42", "unit_price=2", "--args", '{"quantity": 2}']
    done = flowdeck("call", *arguments, "--url", server, database_url=database_url)
    execution_id = done.stdout.strip().splitlines()[-1].split()[1]
    assert get_execution(db, execution_id).initial_params == {
        "quantity": 2,
        "item": "42",
        "unit_price": 2,
    }


def test_flowdeck_call_failures(server: str, database_url: str) -> None:
    failed = flowdeck(
        "call", "charge_card", "amount=5000", "--url", server, database_url=database_url, ok=False
    )
    assert failed.exit_code == 1
    assert "charge_card failed at node 'charge': amount 5000 EUR is over the 1000 limit" in failed.stderr
    assert failed.stdout.startswith("execution ") and failed.stdout.strip().endswith(" error")
    unknown = flowdeck("call", "nope", "--url", server, database_url=database_url, ok=False)
    assert unknown.exit_code == 1
    assert "error: no tool named 'nope'" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    nowhere = f"http://127.0.0.1:{free_port()}/mcp"
    nobody = flowdeck("call", "hello", "--url", nowhere, database_url=database_url, ok=False)
    assert nobody.exit_code == 1
    assert "error: cannot reach the server" in nobody.stderr


def test_serve_refuses_a_public_address_without_a_token(database_url: str) -> None:
    done = flowdeck("serve", "--host", "0.0.0.0", database_url=database_url, ok=False, FLOWDECK_AUTH_TOKEN="")
    assert done.exit_code == 1
    assert "refusing to serve on 0.0.0.0 without FLOWDECK_AUTH_TOKEN" in done.stderr
