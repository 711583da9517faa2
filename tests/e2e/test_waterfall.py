"""The detail panel's waterfall in a real browser: a row per node on one time axis, rows nested for
tries, map items and child executions, links between a parent and its children."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from mcp import Client
from playwright.sync_api import Page, expect

from flowdeck.settings import Settings
from tests.support.server import served

FLOWS = {
    "child.yaml": """
name: child
input_schema: {type: object, properties: {n: {type: integer}}}
nodes:
  - {id: double, type: transform, config: {value: "{{ input.n * 2 }}"}}
  - {id: pause, type: delay, config: {seconds: 0.01}}
""",
    "parent.yaml": """
name: parent
nodes:
  - id: shaky
    type: transform
    config: {value: "{{ nodes.missing }}"}
    retry: {attempts: 2}
    on_error: continue
  - {id: run_child, type: flow, config: {flow: child, arguments: {n: 21}}}
  - {id: skipped, type: transform, when: "{{ false }}", config: {value: 0}}
  - {id: done, type: transform, config: {value: ok}}
""",
    "many.yaml": """
name: many
input_schema: {type: object, properties: {bad: {type: integer, default: 130}}}
nodes:
  - id: each
    type: map
    config:
      items: "{{ range(150) | list }}"
      concurrency: 4
      node: {type: transform, config: {value: "{{ item if item != input.bad else nodes.nothing }}"}}
  - {id: never, type: transform, config: {value: 1}}
""",
}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("waterfall")
    for name, text in FLOWS.items():
        (folder / name).write_text(text)
    with served(Settings(database_url=f"sqlite:///{folder / 'w.db'}"), [folder]) as url:
        yield url


def call(base: str, tool: str, arguments: dict[str, Any]) -> str:
    """An MCP call from a thread of its own (Playwright's event loop holds this one): its execution."""

    async def go() -> Any:
        async with Client(f"{base}/mcp") as client:
            return await client.call_tool(tool, arguments)

    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(asyncio.run(go())))
    thread.start()
    thread.join(30)
    return result[0].meta["flowdeck/execution_id"]


def test_a_row_per_node_with_tries_and_the_child_unfolded_in_place(base: str, page: Page) -> None:
    execution_id = call(base, "parent", {})
    page.goto(f"{base}/executions/{execution_id}")
    timeline = page.get_by_test_id("timeline")
    nodes = timeline.locator("[data-testid=timeline-row][data-kind=node]")
    expect(nodes.first).to_have_attribute("data-node-id", "shaky")
    ids = [
        row.get_attribute("data-node-id")
        for row in timeline.locator(
            "li > details > summary > [data-kind=node], li.step-waiting > [data-kind=node]"
        ).all()
    ]
    assert ids == ["shaky", "run_child", "skipped", "done"], ids
    skipped = timeline.locator('[data-kind=node][data-node-id="skipped"]').first
    expect(skipped).to_have_attribute("data-status", "skipped")
    expect(skipped).to_contain_text("skipped")

    tries = timeline.locator('[data-kind=attempt][data-node-id="shaky"]')
    expect(tries).to_have_count(2)  # in the page while folded
    expect(tries.first).to_have_attribute("data-status", "error")
    expect(tries.first).to_be_hidden()
    timeline.locator('[data-testid=step][data-node-id="shaky"] > details > summary').click()
    expect(tries.first).to_be_visible()
    expect(tries.nth(1)).to_contain_text("try 2")

    child = timeline.locator('[data-kind=child][data-node-id="run_child"]')
    expect(child).to_have_count(1)
    expect(child).to_have_attribute("data-status", "fulfilled")
    timeline.locator('[data-testid=step][data-node-id="run_child"] > details > summary').click()
    child.click()  # the child's own nodes unfold in place
    inner = timeline.locator('[data-testid=step][data-node-id="run_child"] .tl-child [data-kind=node]')
    expect(inner).to_have_count(2)
    expect(inner.first).to_be_visible()
    expect(inner.first).to_have_attribute("data-node-id", "double")

    link = child.get_by_test_id("child-link")
    child_id = link.get_attribute("href").rsplit("/", 1)[1]
    link.click()
    detail = page.get_by_test_id("execution-detail")
    expect(detail).to_have_attribute("data-execution-id", child_id)
    parent_link = detail.get_by_test_id("parent-link")
    assert execution_id in (parent_link.get_attribute("href") or "")
    parent_link.click()
    expect(page.get_by_test_id("execution-detail")).to_have_attribute("data-execution-id", execution_id)


def test_a_large_map_shows_a_hundred_items_the_failed_one_and_a_count(base: str, page: Page) -> None:
    execution_id = call(base, "many", {})
    page.goto(f"{base}/executions/{execution_id}")
    timeline = page.get_by_test_id("timeline")
    items = timeline.locator('[data-kind=item][data-node-id="each"]')
    expect(items).to_have_count(101)  # the first 100, and item 130 that failed
    failed = items.filter(has_text="item 130")
    expect(failed).to_have_attribute("data-status", "error")
    more = timeline.get_by_test_id("timeline-more")
    expect(more).to_contain_text("more items")
    expect(timeline.locator('[data-kind=node][data-node-id="each"]')).to_have_attribute(
        "data-status", "error"
    )
    never = timeline.locator('[data-kind=node][data-node-id="never"]')
    expect(never).to_have_attribute("data-status", "not-run")
    expect(never).to_contain_text("not run")
    bar = timeline.locator('[data-kind=node][data-node-id="each"] .tl-bar')
    style = bar.get_attribute("style") or ""
    assert "width" in style and "left" in style
