"""A real Chromium (Debian's, headless) driven by Playwright, against a served flowdeck."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from sqlalchemy import Engine

from flowdeck.settings import Settings
from flowdeck.store import database
from tests.conftest import KINDS, new_database
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


@contextmanager
def serve_examples(database_url: str, port: int | None = None) -> Iterator[Site]:
    settings = Settings(database_url=database_url)
    with served(settings, [EXAMPLES], port=port) as base:
        db = database.open_database(settings.database_url)
        try:
            yield Site(base, db, settings)
        finally:
            db.dispose()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with serve_examples(f"sqlite:///{tmp_path / 'ui.db'}") as site:
        yield site


@pytest.fixture(params=KINDS)
def any_site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    """The examples served on SQLite and on PostgreSQL."""
    with serve_examples(new_database(request.param, tmp_path, request)) as site:
        yield site


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()
