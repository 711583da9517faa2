"""An exposed server's tool in a real browser: marked on the Flows page, and its Usage tab shows its
calls live, with the arguments and the remote's reply, like any flow's."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from playwright.sync_api import Page, expect

from flowdeck.settings import Settings
from tests.support.remotes import everything_stdio, servers_file
from tests.support.server import served


@pytest.fixture
def base(tmp_path: Path) -> Iterator[str]:
    servers = servers_file(tmp_path, {"everything": {**everything_stdio(), "expose": True}})
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'exposed.db'}", mcp_servers=servers)
    with served(settings) as url:
        yield url


def mcp(base: str, tool: str | None = None, arguments: dict[str, Any] | None = None) -> Any:
    """From a thread of its own (Playwright's event loop holds this one): the call's result, or the
    tool list when no tool is named."""

    async def go() -> Any:
        async with Client(f"{base}/mcp") as client:
            if tool is None:
                return await client.list_tools()
            return await client.call_tool(tool, arguments or {})

    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(asyncio.run(go())))
    thread.start()
    thread.join(30)
    return result[0]


def test_an_exposed_tools_calls_show_live_in_its_usage_tab(base: str, page: Page) -> None:
    assert "everything__echo" in [tool.name for tool in mcp(base).tools]
    page.goto(base)
    group = page.locator('[data-testid=exposed-group][data-server="everything"]')  # a server's tools together
    expect(group.locator("h2")).to_have_text("Exposed from everything")
    row = group.get_by_test_id("flow-item").filter(has_text="everything__echo")
    expect(row.get_by_test_id("exposed-badge")).to_have_text("exposed · everything")
    row.locator("a.flow-name").click()
    expect(page.get_by_test_id("exposed-badge")).to_be_visible()
    expect(page.locator(".flow-header .meta")).to_contain_text("serves echo of the MCP server everything")
    expect(page.get_by_test_id("empty-state")).to_be_visible()

    ok = mcp(base, "everything__echo", {"message": "hello from the browser test"})
    items = page.get_by_test_id("execution-item")
    expect(items).to_have_count(1)  # live, without a reload
    expect(items.first).to_have_attribute("data-status", "fulfilled")
    expect(items.first).to_contain_text("message: hello from the browser test")
    bad = mcp(base, "everything__echo", {"message": 7})
    expect(items).to_have_count(2)
    expect(items.first).to_have_attribute("data-status", "error")

    detail = page.get_by_test_id("execution-detail")
    for result in (ok, bad):
        execution_id = result.meta["flowdeck/execution_id"]
        items.and_(page.locator(f'[data-execution-id="{execution_id}"]')).locator("[data-select]").click()
        expect(detail).to_have_attribute("data-execution-id", execution_id)
        if result is ok:
            expect(detail).to_contain_text("Echo: hello from the browser test")
            expect(detail.get_by_test_id("timeline-row").first).to_have_attribute("data-node-id", "call")
        else:
            expect(detail).to_contain_text("7 is not of type 'string'")
