"""The UI in a real browser: the flows page, the Usage tab (list, details, live updates, pages),
the executions page, escaping and the login."""

from __future__ import annotations

import asyncio
import re
import threading
from subprocess import DEVNULL
from typing import Any

from mcp import Client
from playwright.sync_api import Page, expect

from flowdeck.store.flows import delete_flow, find_live_flow
from flowdeck.store.seed import seed_executions
from tests.e2e.conftest import Site
from tests.support.processes import flowdeck_env, start_flowdeck


def _call(site: Site, tool: str, arguments: dict[str, Any], results: list[Any]) -> None:
    async def go() -> Any:
        async with Client(f"{site.base}/mcp") as client:
            return await client.call_tool(tool, arguments)

    results.append(asyncio.run(go()))


def call_in_background(
    site: Site, tool: str, arguments: dict[str, Any], results: list[Any] | None = None
) -> threading.Thread:
    """An MCP call from a thread of its own: Playwright's event loop holds this one."""
    thread = threading.Thread(
        target=_call, args=(site, tool, arguments, [] if results is None else results), daemon=True
    )
    thread.start()
    return thread


def call(site: Site, tool: str, arguments: dict[str, Any]) -> Any:
    results: list[Any] = []
    call_in_background(site, tool, arguments, results).join(30)
    return results[0]


def usage_url(site: Site, flow: str, query: str = "") -> str:
    return f"{site.base}/flows/{find_live_flow(site.db, flow).id}/usage{query}"


def mark_no_reload(page: Page) -> None:
    page.evaluate("window.__still_here = true")


def assert_no_reload(page: Page) -> None:
    assert page.evaluate("window.__still_here === true"), "the page was reloaded"


def test_the_flows_page_lists_flows_and_deleted_ones_apart(site: Site, page: Page) -> None:
    call(site, "hello", {"name": "Ada"})
    hello = find_live_flow(site.db, "hello")
    call(site, "order_quote", {"item": "pen", "unit_price": 1})
    delete_flow(site.db, find_live_flow(site.db, "order_quote").id)
    page.goto(site.base + "/")
    items = page.get_by_test_id("flow-item")
    expect(items).to_have_count(4)
    row = page.locator(f'[data-flow-id="{hello.id}"]')
    expect(row).to_contain_text("Say hello")
    expect(row).to_contain_text("Greets someone by name")
    expect(row).to_contain_text("1 execution")
    expect(row.get_by_test_id("status-dot")).to_have_attribute("data-status", "fulfilled")
    deleted = page.get_by_test_id("deleted-flow-item")
    expect(deleted).to_have_count(1)
    expect(deleted).to_contain_text("order_quote")
    expect(deleted).to_contain_text("deleted")


def test_the_usage_tab_lists_executions_newest_first_with_their_fields(site: Site, page: Page) -> None:
    for name in ("first", "second", "third"):
        call(site, "hello", {"name": name, "language": "en"})
    page.goto(usage_url(site, "hello"))
    expect(page.get_by_test_id("usage-tab")).to_have_attribute("aria-current", "page")
    items = page.get_by_test_id("execution-item")
    expect(items).to_have_count(3)
    expect(items.nth(0)).to_contain_text("name: third")
    expect(items.nth(2)).to_contain_text("name: first")
    first = items.nth(0)
    expect(first).to_have_attribute("data-status", "fulfilled")
    expect(first.get_by_test_id("status-dot")).to_be_visible()
    expect(first.locator("time")).to_have_text(re.compile(r"^\d\d:\d\d:\d\d$"))  # exact, today
    assert first.locator("time").get_attribute("title").startswith("just now · ")  # how long ago, on hover
    expect(first.get_by_test_id("duration")).to_have_text(re.compile(r"^\d+(\.\d+)? (µs|ms)$"))
    expect(page.get_by_test_id("detail-placeholder")).to_be_visible()
    expect(page.get_by_test_id("stat-total")).to_have_text("3")
    expect(page.get_by_test_id("daily-chart")).to_be_visible()


def test_a_running_execution_is_orange_without_an_end(site: Site, page: Page) -> None:
    running = call_in_background(site, "slow_report", {"pause_s": 3})
    page.goto(usage_url(site, "slow_report"))
    item = page.get_by_test_id("execution-item").first
    expect(item).to_have_attribute("data-status", "pending")
    dot = item.get_by_test_id("status-dot")
    assert dot.evaluate("e => getComputedStyle(e).backgroundColor") in (
        "rgb(224, 138, 0)",
        "rgb(242, 169, 59)",
    )
    expect(item.get_by_test_id("duration")).to_be_hidden()
    item.locator("[data-select]").click()
    expect(page.get_by_test_id("ended-at")).to_have_text("running…")
    running.join(10)


def test_the_empty_state_says_how_to_run_the_flow(site: Site, page: Page) -> None:
    page.goto(usage_url(site, "hello"))
    empty = page.get_by_test_id("empty-state")
    expect(empty).to_be_visible()
    expect(empty).to_contain_text(f"flowdeck call hello --url {site.base}/mcp name=Ada")  # where, and what
    expect(page.get_by_test_id("execution-list")).to_have_count(0)


def test_the_status_circles_explain_themselves(site: Site, page: Page) -> None:
    call(site, "hello", {"name": "ok"})
    call(site, "charge_card", {"amount": 5000})
    page.goto(usage_url(site, "hello"))
    dot = page.get_by_test_id("status-dot").first
    dot.hover()
    expect(dot.get_by_role("tooltip")).to_be_visible()
    expect(dot.get_by_role("tooltip")).to_have_text("Fulfilled - Completed successfully")
    page.goto(usage_url(site, "charge_card"))
    dot = page.get_by_test_id("status-dot").first
    page.get_by_test_id("execution-item").first.locator("a").focus()  # keyboard users get it too
    expect(dot.get_by_role("tooltip")).to_be_visible()
    expect(dot.get_by_role("tooltip")).to_have_text("Error - Execution failed: failed at node charge")
    expect(dot).to_have_text(re.compile("✕"))  # a shape, not only a color


def test_clicking_shows_the_details_in_place(site: Site, page: Page) -> None:
    result = call(
        site, "order_quote", {"item": "pen", "quantity": 3, "unit_price": 2.5, "discount_code": "X"}
    )
    execution_id = result.meta["flowdeck/execution_id"]
    page.goto(usage_url(site, "order_quote"))
    mark_no_reload(page)
    page.get_by_test_id("execution-item").first.locator("[data-select]").click()
    detail = page.get_by_test_id("execution-detail")
    expect(detail).to_have_attribute("data-execution-id", execution_id)
    expect(detail.get_by_test_id("initial-params")).to_contain_text('"discount_code": "X"')
    expect(page.get_by_test_id("execution-item").first).to_have_class(re.compile("selected"))
    assert f"execution={execution_id}" in page.url and "page=1" in page.url
    assert_no_reload(page)
    page.reload()  # the URL alone gives the same view
    expect(page.get_by_test_id("execution-detail")).to_have_attribute("data-execution-id", execution_id)


def test_the_data_after_each_node(site: Site, page: Page) -> None:
    result = call(site, "order_quote", {"item": "pen", "quantity": 2, "unit_price": 5, "discount_code": "X"})
    page.goto(usage_url(site, "order_quote", f"?execution={result.meta['flowdeck/execution_id']}"))
    steps = page.get_by_test_id("step")
    expect(steps).to_have_count(3)
    expect(steps.nth(0)).to_have_attribute("data-node-id", "subtotal")
    steps.nth(0).locator("summary").first.click()
    expect(steps.nth(0).get_by_test_id("step-output")).to_have_text("10")
    steps.nth(1).locator("summary").first.click()
    expect(steps.nth(1).get_by_test_id("step-output")).to_contain_text('"amount": 1.0')
    steps.nth(1).locator("details.data-all summary").click()
    data_after = steps.nth(1).get_by_test_id("data-after")
    expect(data_after).to_contain_text('"subtotal": 10')
    expect(data_after).to_contain_text('"discount": {')
    expect(data_after).not_to_contain_text('"total"')


def test_a_skipped_node_shows_as_skipped(site: Site, page: Page) -> None:
    result = call(site, "order_quote", {"item": "pen", "unit_price": 5})
    page.goto(usage_url(site, "order_quote", f"?execution={result.meta['flowdeck/execution_id']}"))
    expect(page.locator('[data-testid=step][data-node-id="discount"]')).to_have_attribute(
        "data-status", "skipped"
    )


def test_the_failing_node_and_its_error(site: Site, page: Page) -> None:
    result = call(site, "charge_card", {"amount": 5000})
    page.goto(usage_url(site, "charge_card", f"?execution={result.meta['flowdeck/execution_id']}"))
    error = page.get_by_test_id("execution-error")
    expect(error).to_contain_text("failed at node charge")
    expect(error).to_contain_text("node_error")
    expect(error).to_contain_text("amount 5000 EUR is over the 1000 limit")
    failing = page.locator("[data-testid=step].failing")
    expect(failing).to_have_attribute("data-node-id", "charge")
    expect(failing.get_by_test_id("step-error")).to_have_text("amount 5000 EUR is over the 1000 limit")


def test_a_placeholder_until_something_is_selected(site: Site, page: Page) -> None:
    call(site, "hello", {"name": "x"})
    page.goto(usage_url(site, "hello"))
    expect(page.get_by_test_id("detail-placeholder")).to_be_visible()
    expect(page.get_by_test_id("execution-detail")).to_have_count(0)


def test_live_a_new_execution_appears_and_turns_green_without_reload(site: Site, page: Page) -> None:
    call(site, "slow_report", {"pause_s": 0})
    page.goto(usage_url(site, "slow_report"))
    mark_no_reload(page)
    expect(page.get_by_test_id("execution-item")).to_have_count(1)
    running = call_in_background(site, "slow_report", {"topic": "live", "pause_s": 1})
    items = page.get_by_test_id("execution-item")
    expect(items).to_have_count(2)
    expect(items.first).to_contain_text("topic: live")
    expect(items.first).to_have_attribute("data-status", "pending")
    expect(items.first).to_have_attribute("data-status", "fulfilled", timeout=15_000)
    expect(items.first.get_by_test_id("duration")).to_have_text(re.compile(r"\d"))
    assert_no_reload(page)
    running.join(10)


def test_live_an_execution_run_by_another_process_appears_too(site: Site, page: Page) -> None:
    """A `flowdeck flows run` (as a `flowdeck mcp` for a desktop client would) on the same SQLite file."""
    call(site, "slow_report", {"pause_s": 0})
    page.goto(usage_url(site, "slow_report"))
    mark_no_reload(page)
    expect(page.get_by_test_id("execution-item")).to_have_count(1)
    arguments = ["--args", '{"topic": "elsewhere", "pause_s": 1}']
    environment = flowdeck_env(site.settings.database_url)
    with start_flowdeck("flows", "run", "slow_report", *arguments, env=environment, stdout=DEVNULL) as other:
        items = page.get_by_test_id("execution-item")
        expect(items).to_have_count(2)
        expect(items.first).to_contain_text("topic: elsewhere")
        expect(items.first).to_have_attribute("data-status", "pending")
        expect(items.first).to_have_attribute("data-status", "fulfilled", timeout=15_000)
        assert other.wait(15) == 0
    assert_no_reload(page)


def test_the_open_details_grow_node_by_node(site: Site, page: Page) -> None:
    running = call_in_background(site, "slow_report", {"pause_s": 1.2})
    page.goto(usage_url(site, "slow_report"))
    page.get_by_test_id("execution-item").first.locator("[data-select]").click()
    detail = page.get_by_test_id("execution-detail")
    expect(detail).to_have_attribute("data-status", "pending")
    expect(detail.locator('[data-testid=step][data-node-id="gather"]')).to_have_attribute(
        "data-status", "fulfilled", timeout=15_000
    )
    expect(detail.locator('[data-testid=step][data-node-id="crunch"]')).to_have_attribute(
        "data-status", "fulfilled", timeout=15_000
    )
    expect(page.get_by_test_id("execution-detail")).to_have_attribute(
        "data-status", "fulfilled", timeout=15_000
    )
    expect(page.get_by_test_id("ended-at")).not_to_have_text("running…")
    running.join(10)


def test_pages_by_next_and_prev(site: Site, page: Page) -> None:
    flow = find_live_flow(site.db, "hello")
    seed_executions(site.db, flow, 45)
    page.goto(usage_url(site, "hello"))
    mark_no_reload(page)
    items = page.get_by_test_id("execution-item")
    expect(items).to_have_count(20)
    first_page = items.evaluate_all("els => els.map(e => e.dataset.executionId)")
    assert first_page == sorted(first_page, reverse=True)
    pagination = page.get_by_test_id("pagination")
    expect(pagination).to_contain_text("1")
    expect(pagination).to_contain_text("3")
    page.get_by_test_id("page-next").click()
    expect(page.locator(".pagination .current")).to_have_text("2")
    second_page = items.evaluate_all("els => els.map(e => e.dataset.executionId)")
    assert len(second_page) == 20 and max(second_page) < min(first_page)
    assert "page=2" in page.url
    page.get_by_test_id("page-prev").click()
    expect(page.locator(".pagination .current")).to_have_text("1")
    assert items.evaluate_all("els => els.map(e => e.dataset.executionId)") == first_page
    assert_no_reload(page)
    page.go_back()
    expect(page.locator(".pagination .current")).to_have_text("2")


def test_another_page_does_not_shift_a_link_tells_what_is_new(site: Site, page: Page) -> None:
    seed_executions(site.db, find_live_flow(site.db, "hello"), 30)
    page.goto(usage_url(site, "hello", "?page=2"))
    before = page.get_by_test_id("execution-item").evaluate_all("els => els.map(e => e.dataset.executionId)")
    call(site, "hello", {"name": "newcomer"})
    new = page.get_by_test_id("new-executions")
    expect(new).to_be_visible()
    expect(new).to_have_text(re.compile(r"^1 new"))
    assert (
        page.get_by_test_id("execution-item").evaluate_all("els => els.map(e => e.dataset.executionId)")
        == before
    )
    new.click()
    expect(page.get_by_test_id("execution-item").first).to_contain_text("name: newcomer")


def test_the_executions_page_keeps_a_deleted_flows_executions(site: Site, page: Page) -> None:
    call(site, "hello", {"name": "before deletion"})
    call(site, "charge_card", {"amount": 10})
    hello = find_live_flow(site.db, "hello")
    delete_flow(site.db, hello.id)
    page.goto(site.base + "/executions")
    items = page.get_by_test_id("execution-item")
    expect(items).to_have_count(2)
    row = items.filter(has_text="hello")
    expect(row).to_contain_text("deleted")
    expect(row).to_contain_text("name: before deletion")
    page.get_by_test_id("flow-filter").select_option(hello.id)
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_test_id("execution-item")).to_have_count(1)
    page.get_by_test_id("status-filter").select_option("error")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_test_id("empty-state")).to_be_visible()


def test_user_data_is_shown_as_text_never_run(site: Site, page: Page) -> None:
    payload = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'
    result = call(site, "hello", {"name": payload})
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    page.goto(usage_url(site, "hello", f"?execution={result.meta['flowdeck/execution_id']}"))
    expect(page.get_by_test_id("execution-item").first).to_contain_text("<script>window.__xss = 1</script>")
    expect(page.get_by_test_id("initial-params")).to_contain_text("<img src=x onerror=")
    page.goto(site.base + "/executions")
    expect(page.get_by_test_id("execution-item").first).to_contain_text("<script>")
    assert page.evaluate("window.__xss === undefined")
    assert dialogs == []


def test_dark_follows_the_system_and_a_phone_shows_one_column_at_a_time(site: Site, browser: Any) -> None:
    result = call(site, "hello", {"name": "small"})
    url = usage_url(site, "hello", f"?execution={result.meta['flowdeck/execution_id']}")
    dark = browser.new_page(color_scheme="dark", viewport={"width": 1280, "height": 900})
    dark.goto(url)
    assert dark.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(19, 19, 22)"
    wide = (
        dark.get_by_test_id("execution-list").bounding_box(),
        dark.get_by_test_id("execution-detail").bounding_box(),
    )
    assert wide[1]["x"] > wide[0]["x"] + wide[0]["width"] - 1  # side by side
    dark.close()
    phone = browser.new_page(viewport={"width": 400, "height": 800})
    phone.goto(url)
    assert phone.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(247, 247, 245)"
    expect(phone.get_by_test_id("execution-detail")).to_be_visible()  # the details, in place of the list
    expect(phone.get_by_test_id("execution-list")).to_be_hidden()
    phone.get_by_test_id("back-to-list").click()
    expect(phone.get_by_test_id("execution-list")).to_be_visible()
    expect(phone.get_by_test_id("detail-placeholder")).to_be_hidden()
    assert phone.evaluate(
        "document.documentElement.scrollWidth <= window.innerWidth + 1"
    )  # no sideways scroll
    phone.close()
