"""``make screenshots``: the Usage tab, light and dark, with a failed execution selected, its
insights panel over a seeded history, and an exposed server's tool (the reference "everything"
server's ``echo``) with a call selected, saved to the folder given (docs/screenshots)."""

from __future__ import annotations

import asyncio
import sys
import tempfile
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

from mcp import Client
from playwright.sync_api import Browser, sync_playwright

from flowdeck.settings import Settings
from flowdeck.store import database
from flowdeck.store.flows import find_live_flow
from flowdeck.store.seed import seed_executions
from tests.e2e.conftest import CHROMIUM_ARGS, EXAMPLES, chromium_path
from tests.support.remotes import everything_stdio, servers_file
from tests.support.server import served


def _in_thread(calls: Callable[[Client], Awaitable[str]], base: str) -> str:
    """Calls made from a thread of their own (Playwright holds this one's loop): what they return."""

    async def go() -> str:
        async with Client(f"{base}/mcp") as client:
            return await calls(client)

    box: list[str] = []
    thread = threading.Thread(target=lambda: box.append(asyncio.run(go())))
    thread.start()
    thread.join(60)
    return box[0]


async def _charges(client: Client) -> str:
    for amount in (120, 80.5, 990):
        await client.call_tool("charge_card", {"amount": amount, "currency": "EUR"})
    failed = await client.call_tool("charge_card", {"amount": 5000, "currency": "EUR"})
    await client.call_tool("charge_card", {"amount": 42})
    return failed.meta["flowdeck/execution_id"]


async def _echoes(client: Client) -> str:
    await client.list_tools()
    for message in ("hello", "what did the agent send?", "and what came back"):
        chosen = await client.call_tool("everything__echo", {"message": message})
    await client.call_tool("everything__echo", {"message": 42})
    return chosen.meta["flowdeck/execution_id"]


def exposed(folder: Path, browser: Browser) -> None:
    """The Usage tab of the everything server's echo, served by flowdeck: exposed.png."""
    with tempfile.TemporaryDirectory() as tmp:
        servers = servers_file(Path(tmp), {"everything": {**everything_stdio(), "expose": True}})
        settings = Settings(database_url=f"sqlite:///{tmp}/exposed.db", mcp_servers=servers)
        with served(settings) as base:
            chosen = _in_thread(_echoes, base)
            db = database.open_database(settings.database_url)
            flow = find_live_flow(db, "everything__echo")
            db.dispose()
            page = browser.new_page(viewport={"width": 1400, "height": 760})
            page.goto(f"{base}/flows/{flow.id}/usage?execution={chosen}")
            page.get_by_test_id("execution-detail").wait_for()
            page.screenshot(path=str(folder / "exposed.png"))
            page.close()


def main(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(database_url=f"sqlite:///{tmp}/shots.db")
        with served(settings, [EXAMPLES]) as base:
            db = database.open_database(settings.database_url)
            flow = find_live_flow(db, "charge_card")
            seed_executions(db, flow, 260)
            failed = _in_thread(_charges, base)
            url = f"{base}/flows/{flow.id}/usage?execution={failed}"
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
                for scheme, size, name in (
                    ("light", {"width": 1400, "height": 900}, "usage-light.png"),
                    ("dark", {"width": 1400, "height": 900}, "usage-dark.png"),
                    ("light", {"width": 420, "height": 900}, "usage-phone.png"),
                ):
                    page = browser.new_page(viewport=size, color_scheme=scheme)
                    page.goto(url)
                    page.get_by_test_id("execution-detail").wait_for()
                    page.screenshot(path=str(folder / name))
                    page.close()
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(f"{base}/flows/{flow.id}/usage")
                page.get_by_test_id("insights").screenshot(path=str(folder / "usage-insights.png"))
                page.close()
                exposed(folder, browser)
                browser.close()
            db.dispose()
    print(f"screenshots in {folder}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots"))
