"""A real Chromium (Debian's, headless) driven by Playwright, against a served flowdeck."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from sqlalchemy import Engine

from flowdeck.settings import Settings
from flowdeck.store import database
from tests.support import EXAMPLES
from tests.support.server import served

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]  # fmt: skip


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise RuntimeError("Chromium is not installed: `make test` installs it (apt-get install chromium)")
    return path


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    # package scope: Playwright's sync API keeps an event loop running in this thread while it is
    # open, which the asyncio tests after this package must not find
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@dataclass
class Site:
    base: str
    db: Engine
    settings: Settings


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'ui.db'}")
    with served(settings, [EXAMPLES]) as base:
        db = database.open_database(settings.database_url)
        yield Site(base, db, settings)
        db.dispose()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()
