"""The Usage tab as a debugging tool, in Chromium, on SQLite and PostgreSQL: filters kept in the URL
and respected live, insights and grouped errors, the edges of paging, the keyboard, narrow screens,
no sideways scroll, and a live stream that drops and catches up."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from flowdeck.flowfiles import load_flow_text
from flowdeck.store import database
from flowdeck.store.flows import FlowRecord, find_live_flow, import_flow
from flowdeck.store.seed import seed_executions
from flowdeck.times import SECOND_US, now_us
from flowdeck.web.filters import utc_input
from tests.conftest import KINDS, new_database
from tests.e2e.conftest import Site
from tests.e2e.test_usage import assert_no_reload, call, mark_no_reload, usage_url
from tests.support import EXAMPLES
from tests.support.history import CHECKOUT, HOUR_US, Ran, checkout_history, record_execution
from tests.support.postgres import free_port
from tests.support.processes import flowdeck_env, start_flowdeck, wait_healthy

NARROW = [390, 800]
WIDTHS = [390, 800, 1400]


def _viewer(browser: Browser, width: int) -> Page:
    page = browser.new_context(viewport={"width": width, "height": 800}).new_page()
    page.set_default_timeout(10_000)
    return page


def _checkout(site: Site) -> tuple[FlowRecord, int, dict[str, list[str]]]:
    """The checkout flow with its twenty executions, a second apart from about an hour ago; the 8th
    starts on a whole minute (which a browser's time input shows without its ``:00`` seconds)."""
    flow, _ = import_flow(site.db, load_flow_text(CHECKOUT).model_dump(mode="json", exclude_none=True))
    minute = 60 * SECOND_US
    start = (now_us() - HOUR_US) // minute * minute - 8 * SECOND_US
    return flow, start, checkout_history(site.db, flow, start)


def _listed(page: Page) -> list[str]:
    return page.get_by_test_id("execution-item").evaluate_all("els => els.map(e => e.dataset.executionId)")


def _shown(page: Page) -> Any:
    return expect(page.get_by_test_id("execution-detail"))


def test_no_page_scrolls_sideways(site: Site, browser: Browser) -> None:
    hello = call(site, "hello", {"name": "a rather long name to preview " * 4})
    call(site, "charge_card", {"amount": 5000})
    seed_executions(site.db, find_live_flow(site.db, "hello"), 45)
    flow, _, _ = _checkout(site)
    paths = [
        "/",
        "/executions",
        usage_url(site, "hello", f"?execution={hello.meta['flowdeck/execution_id']}")[len(site.base) :],
        usage_url(site, "charge_card")[len(site.base) :],
        f"/flows/{flow.id}/usage",
        f"/flows/{flow.id}",
        f"/flows/{flow.id}/usage?page=abc",
    ]
    viewer = _viewer(browser, WIDTHS[0])
    for width in WIDTHS:
        viewer.set_viewport_size({"width": width, "height": 800})
        for path in paths:
            viewer.goto(site.base + path)
            overflow = viewer.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{path} scrolls {overflow} px sideways at {width} px"
    viewer.context.close()


@pytest.mark.parametrize("width", NARROW)
def test_on_a_narrow_screen_the_details_replace_the_list_and_back_returns(
    any_site: Site, browser: Browser, width: int
) -> None:
    for name in ("one", "two", "three"):
        call(any_site, "hello", {"name": name})
    viewer = _viewer(browser, width)
    viewer.goto(usage_url(any_site, "hello"))
    mark_no_reload(viewer)
    ids = _listed(viewer)
    viewer.get_by_test_id("execution-item").nth(1).locator("[data-select]").click()
    detail = viewer.get_by_test_id("execution-detail")
    expect(detail).to_have_attribute("data-execution-id", ids[1])
    expect(detail).to_be_in_viewport()  # not 1,300 px further down
    expect(viewer.get_by_test_id("execution-list")).to_be_hidden()
    assert f"execution={ids[1]}" in viewer.url

    viewer.get_by_test_id("back-to-list").click()
    expect(viewer.get_by_test_id("execution-list")).to_be_in_viewport()
    expect(detail).to_be_hidden()
    assert "execution=" not in viewer.url

    viewer.get_by_test_id("execution-item").nth(2).locator("[data-select]").click()
    expect(detail).to_have_attribute("data-execution-id", ids[2])
    viewer.go_back()  # the browser's back does the same
    expect(viewer.get_by_test_id("execution-list")).to_be_visible()
    expect(detail).to_be_hidden()
    assert_no_reload(viewer)
    viewer.context.close()


def test_the_keyboard_moves_through_the_list(any_site: Site, page: Page) -> None:
    for name in ("one", "two", "three"):
        call(any_site, "hello", {"name": name})
    page.goto(usage_url(any_site, "hello"))
    ids = _listed(page)
    # a row is one tab stop: its link (the status dot inside is not another)
    stops = page.get_by_test_id("execution-item").evaluate_all(
        "els => els.map(e => e.querySelectorAll('a[href], [tabindex]').length)"
    )
    assert stops == [1, 1, 1]
    active = "document.activeElement.dataset.select || null"

    page.get_by_test_id("execution-item").first.locator("[data-select]").focus()
    page.keyboard.press("Tab")
    assert page.evaluate(active) == ids[1]
    page.keyboard.press("Enter")
    _shown(page).to_have_attribute("data-execution-id", ids[1])

    page.keyboard.press("ArrowDown")
    _shown(page).to_have_attribute("data-execution-id", ids[2])
    assert page.evaluate(active) == ids[2] and f"execution={ids[2]}" in page.url
    page.keyboard.press("ArrowDown")  # the last stays the last
    _shown(page).to_have_attribute("data-execution-id", ids[2])
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")
    _shown(page).to_have_attribute("data-execution-id", ids[0])
    assert page.evaluate(active) == ids[0]

    # the focused row's status tooltip shows; Escape closes it until the focus moves on
    page.keyboard.press("Tab")
    page.keyboard.press("Shift+Tab")
    tooltip = page.get_by_test_id("execution-item").first.get_by_role("tooltip")
    expect(tooltip).to_be_visible()
    page.keyboard.press("Escape")
    expect(tooltip).to_be_hidden()
    page.keyboard.press("Tab")
    expect(page.get_by_test_id("execution-item").nth(1).get_by_role("tooltip")).to_be_visible()


def test_the_status_filter_is_in_the_url_and_the_live_list_keeps_to_it(any_site: Site, page: Page) -> None:
    call(any_site, "hello", {"name": "fine"})
    call(any_site, "hello", {})  # invalid arguments: an error, recorded
    page.goto(usage_url(any_site, "hello"))
    mark_no_reload(page)
    page.get_by_test_id("status-filter").select_option("error")
    expect(page).to_have_url(re.compile(r"status=error"))
    items = page.get_by_test_id("execution-item")
    expect(items).to_have_count(1)
    expect(items.first).to_have_attribute("data-status", "error")
    expect(page.get_by_test_id("listed")).to_have_text("1 matching execution")

    call(any_site, "hello", {"name": "not an error"})  # does not match: counted, not listed
    expect(page.get_by_test_id("stat-total")).to_have_text("3")
    expect(items).to_have_count(1)
    call(any_site, "hello", {"name": 42})  # matches
    expect(items).to_have_count(2)
    expect(page.get_by_test_id("listed")).to_have_text("2 matching executions")
    assert_no_reload(page)

    page.reload()  # the URL keeps the filter
    expect(page.get_by_test_id("status-filter")).to_have_value("error")
    expect(items).to_have_count(2)
    page.get_by_test_id("clear-filters").click()
    expect(items).to_have_count(4)


def test_argument_and_time_filters(any_site: Site, page: Page) -> None:
    flow, start, made = _checkout(any_site)
    page.goto(f"{any_site.base}/flows/{flow.id}/usage")
    mark_no_reload(page)
    page.get_by_test_id("param-filter").fill("order_id=ord-7")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"param\.order_id=ord-7"))
    expect(page.get_by_test_id("execution-item")).to_have_count(1)
    assert _listed(page) == [made["all"][6]]
    expect(page.get_by_test_id("clear-filters")).to_be_visible()  # the form, as the new URL says

    page.get_by_test_id("param-filter").fill("")
    page.get_by_test_id("since-filter").fill(utc_input(start + 5 * SECOND_US))
    page.get_by_test_id("until-filter").fill(utc_input(start + 8 * SECOND_US))
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"since=.*until="))
    expect(page.get_by_test_id("execution-item")).to_have_count(4)  # the whole of the last second too
    assert set(_listed(page)) == set(made["all"][4:8])
    # the insights follow the time range
    expect(page.get_by_test_id("insights")).to_contain_text("of the time range")
    expect(page.locator('[data-testid=node-insight][data-node-id="price"] td').nth(1)).to_have_text("4")
    assert_no_reload(page)

    page.reload()
    since = utc_input(start + 5 * SECOND_US)  # a browser shows 14:02:00 as 14:02
    expect(page.get_by_test_id("since-filter")).to_have_value(re.compile(f"^{since.removesuffix(':00')}"))
    expect(page.get_by_test_id("execution-item")).to_have_count(4)


def test_insights_and_grouped_errors(any_site: Site, page: Page) -> None:
    flow, _, made = _checkout(any_site)
    page.goto(f"{any_site.base}/flows/{flow.id}/usage")
    rows = page.get_by_test_id("node-insight")
    expect(rows).to_have_count(3)
    assert rows.evaluate_all("els => els.map(e => e.dataset.nodeId)") == ["price", "charge", "ship"]
    price = page.locator('[data-testid=node-insight][data-node-id="price"]')
    expect(price).to_contain_text("10.0 ms")  # p50
    expect(price).to_contain_text("19.0 ms")  # p95: the slowest, a full bar
    charge = page.locator('[data-testid=node-insight][data-node-id="charge"]')
    expect(charge).to_contain_text("30.0 %")
    assert charge.locator(".meter-error").evaluate("e => e.style.width") == "30%"
    assert price.locator(".meter-time").evaluate("e => e.style.width") == "100%"

    groups = page.get_by_test_id("error-group")
    expect(groups).to_have_count(2)
    expect(groups.first).to_have_attribute("data-count", "5")
    expect(groups.first).to_contain_text('card <n> declined for "…"')

    mark_no_reload(page)
    groups.first.locator("[data-filter]").click()  # the group's executions
    expect(page).to_have_url(re.compile(r"status=error.*error_node_id=charge"))
    expect(page.get_by_test_id("execution-item")).to_have_count(5)
    assert set(_listed(page)) == set(made["declined"])
    expect(page.get_by_test_id("error-group-filter")).to_contain_text("charge")

    groups.first.get_by_test_id("error-example").click()  # the latest of them
    _shown(page).to_have_attribute("data-execution-id", made["declined"][-1])
    assert_no_reload(page)


def test_the_edges_of_paging(any_site: Site, page: Page) -> None:
    seed_executions(any_site.db, find_live_flow(any_site.db, "hello"), 45)
    page.goto(usage_url(any_site, "hello", "?page=99"))  # past the last: the last
    current = page.locator(".pagination .current")
    expect(current).to_have_text("3")
    expect(page.get_by_test_id("execution-item")).to_have_count(5)

    mark_no_reload(page)
    jump = page.get_by_test_id("page-jump")
    jump.locator("input[name=page]").fill("2")
    jump.locator("input[name=page]").press("Enter")
    expect(current).to_have_text("2")
    assert "page=2" in page.url
    assert_no_reload(page)

    for query, reason in [("?page=abc", "page must be a number"), ("?status=done", "status must be one of")]:
        page.goto(usage_url(any_site, "hello", query))
        expect(page.get_by_test_id("error-message")).to_contain_text(reason)
        assert not page.locator("body").inner_text().lstrip().startswith("{")
        page.get_by_test_id("without-query").click()
        expect(page.get_by_test_id("execution-item")).to_have_count(20)

    failed = call(any_site, "charge_card", {"amount": 5000}).meta["flowdeck/execution_id"]
    page.goto(usage_url(any_site, "hello", f"?execution={failed}"))  # another flow's: under its own
    charge_card = find_live_flow(any_site.db, "charge_card")
    expect(page).to_have_url(re.compile(f"/flows/{charge_card.id}/usage"))
    _shown(page).to_have_attribute("data-execution-id", failed)


def test_the_list_shows_clock_times_and_the_nodes_that_did_not_run(any_site: Site, page: Page) -> None:
    failed = call(any_site, "charge_card", {"amount": 5000}).meta["flowdeck/execution_id"]
    page.goto(usage_url(any_site, "charge_card", f"?execution={failed}"))
    started = page.get_by_test_id("execution-item").first.locator(".started time")
    expect(started).to_have_text(re.compile(r"^\d\d:\d\d:\d\d$"))  # today: the time, to the second
    expect(started).to_have_attribute("title", re.compile(r"just now|ago"))
    waiting = page.locator('.step-waiting [data-testid=timeline-row][data-node-id="receipt"]')
    expect(waiting).to_contain_text("receipt")


def test_a_deleted_flow_says_so_while_open(any_site: Site, page: Page) -> None:
    call(any_site, "hello", {"name": "last"})
    page.goto(usage_url(any_site, "hello"))
    banner = page.get_by_test_id("flow-deleted")
    expect(banner).to_be_hidden()
    flow_id = find_live_flow(any_site.db, "hello").id
    assert httpx.delete(f"{any_site.base}/api/flows/{flow_id}").status_code == 204
    expect(banner).to_be_visible()
    expect(page.get_by_test_id("execution-item")).to_have_count(1)  # its executions stay


def test_on_page_two_the_totals_move_and_new_counts_only_matches(any_site: Site, page: Page) -> None:
    hello = find_live_flow(any_site.db, "hello")
    seed_executions(any_site.db, hello, 300)  # about 12 % errors: more than a page of them
    errors = httpx.get(f"{any_site.base}/api/flows/{hello.id}/executions", params={"status": "error"}).json()
    assert errors["total"] > 20
    page.goto(usage_url(any_site, "hello", "?status=error&page=2"))
    before = _listed(page)
    stat = page.get_by_test_id("stat-total")
    expect(stat).to_have_text("300")
    new = page.get_by_test_id("new-executions")

    call(any_site, "hello", {"name": "fine"})
    expect(stat).to_have_text("301")
    expect(new).to_be_hidden()  # not a match
    call(any_site, "hello", {})
    expect(stat).to_have_text("302")
    expect(new).to_have_text(re.compile(r"^1 new"))
    assert _listed(page) == before  # the page does not shift
    new.click()
    expect(page.locator(".pagination .current")).to_have_text("1")
    expect(page.get_by_test_id("execution-item").first).to_have_attribute("data-status", "error")


def _serve(database_url: str, port: int) -> subprocess.Popen[bytes]:
    process = start_flowdeck(
        "serve", "--port", str(port), "--flows", str(EXAMPLES), env=flowdeck_env(database_url)
    )
    wait_healthy(process, f"http://127.0.0.1:{port}")
    return process


@pytest.mark.parametrize("kind", KINDS)
def test_a_restarting_server_is_said_and_caught_up_with(
    request: pytest.FixtureRequest, tmp_path: Path, page: Page, kind: str
) -> None:
    url, port = new_database(kind, tmp_path, request), free_port()
    base = f"http://127.0.0.1:{port}"
    server = _serve(url, port)
    try:
        db = database.open_database(url)
        hello = find_live_flow(db, "hello")
        record_execution(db, hello, started_at=now_us(), params={"name": "before"}, ran=[Ran("greet", 90)])
        page.goto(f"{base}/flows/{hello.id}/usage")
        mark_no_reload(page)
        items = page.get_by_test_id("execution-item")
        expect(items).to_have_count(1)
        lost = page.get_by_test_id("connection-lost")
        expect(lost).to_be_hidden()

        server.send_signal(signal.SIGTERM)  # a restart: the open stream does not hold it up
        server.wait(10)
        expect(lost).to_be_visible()
        # run meanwhile, by a process not serving the page
        record_execution(
            db, hello, started_at=now_us(), params={"name": "while away"}, ran=[Ran("greet", 90)]
        )
        server = _serve(url, port)
        expect(lost).to_be_hidden(timeout=20_000)
        expect(items).to_have_count(2)  # what happened meanwhile, without a reload
        expect(items.first).to_contain_text("while away")
        assert_no_reload(page)
        db.dispose()
    finally:
        server.kill()
        server.wait(10)
