"""The re-run button in Chromium, on SQLite and PostgreSQL: the new execution is selected and followed
live without a reload; a refusal says why where the button is."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from flowdeck.store.flows import delete_flow, find_live_flow
from tests.e2e.conftest import Site
from tests.e2e.test_usage import assert_no_reload, call, call_in_background, mark_no_reload, usage_url


def test_rerun_selects_the_new_execution_and_follows_it_live(any_site: Site, page: Page) -> None:
    first = call(any_site, "slow_report", {"topic": "rerun", "pause_s": 0.6})
    original = first.meta["flowdeck/execution_id"]
    page.goto(usage_url(any_site, "slow_report", f"?execution={original}"))
    mark_no_reload(page)
    detail = page.get_by_test_id("execution-detail")
    expect(detail).to_have_attribute("data-execution-id", original)
    page.get_by_test_id("rerun-button").click()

    expect(detail).not_to_have_attribute("data-execution-id", original)
    rerun_id = detail.get_attribute("data-execution-id")
    assert rerun_id and f"execution={rerun_id}" in page.url
    expect(page.get_by_test_id("rerun-of-link")).to_have_attribute("href", f"/executions/{original}")
    expect(detail).to_have_attribute("data-status", "pending")  # it runs for over a second
    expect(detail).to_have_attribute("data-status", "fulfilled", timeout=15_000)  # followed live
    expect(page.get_by_test_id("execution-output")).to_contain_text("Report on rerun")
    expect(page.locator(f"[data-testid=execution-item][data-execution-id='{rerun_id}']")).to_have_class(
        re.compile("selected")
    )
    assert_no_reload(page)


def test_a_refused_rerun_says_why_beside_the_button(any_site: Site, page: Page) -> None:
    done = call(any_site, "hello", {"name": "Ann"})
    hello = find_live_flow(any_site.db, "hello")
    delete_flow(any_site.db, hello.id)
    page.goto(f"{any_site.base}/flows/{hello.id}/usage?execution={done.meta['flowdeck/execution_id']}")
    page.get_by_test_id("rerun-button").click()
    expect(page.get_by_test_id("rerun-error")).to_contain_text("'hello' was deleted")
    expect(page.get_by_test_id("execution-detail")).to_have_attribute(
        "data-execution-id", done.meta["flowdeck/execution_id"]
    )


def test_the_rerun_button_comes_when_the_execution_ends(any_site: Site, page: Page) -> None:
    thread = call_in_background(any_site, "slow_report", {"pause_s": 1})
    page.goto(usage_url(any_site, "slow_report"))
    page.get_by_test_id("execution-item").first.click()
    detail = page.get_by_test_id("execution-detail")
    expect(detail).to_have_attribute("data-status", "pending")
    expect(page.get_by_test_id("rerun-button")).to_have_count(0)
    expect(detail).to_have_attribute("data-status", "fulfilled", timeout=15_000)
    expect(page.get_by_test_id("rerun-button")).to_be_visible()
    thread.join(30)
