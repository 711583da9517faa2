"""With FLOWDECK_AUTH_TOKEN set, a person signs in once; the token lives in an HttpOnly cookie."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from flowdeck.settings import Settings
from tests.e2e.conftest import EXAMPLES
from tests.support.server import served

TOKEN = "correct-horse-battery"


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[str]:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'ui.db'}", auth_token=TOKEN)
    with served(settings, [EXAMPLES]) as base:
        yield base


def test_pages_ask_for_the_token_then_remember_it(secured: str, page: Page) -> None:
    page.goto(secured + "/executions")
    expect(page).to_have_url(f"{secured}/login?next=/executions")
    page.get_by_label("Token").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That token is not the right one.")
    page.get_by_label("Token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(secured + "/executions")
    expect(page.get_by_role("heading", name="Executions")).to_be_visible()
    cookie = next(c for c in page.context.cookies() if c["name"] == "flowdeck_token")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    page.goto(secured + "/")
    expect(page.get_by_test_id("flow-item")).to_have_count(5)


def test_machines_still_get_401_not_a_login_page(secured: str) -> None:
    response = httpx.get(secured + "/api/flows")
    assert response.status_code == 401
    assert httpx.get(secured + "/api/flows", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert httpx.get(secured + "/", follow_redirects=False).status_code == 303


def test_no_login_without_a_token(tmp_path: Path, page: Page) -> None:
    with served(Settings(database_url=f"sqlite:///{tmp_path / 'open.db'}"), [EXAMPLES]) as base:
        page.goto(base + "/")
        expect(page.get_by_test_id("flow-item")).to_have_count(5)
        assert httpx.get(base + "/login").status_code == 404
