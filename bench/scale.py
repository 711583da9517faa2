"""History at scale: API latency for the first page, the last page, one execution, an argument search
and the insights of a flow with 1,000,000 executions (plus 100,000 over 20 other flows), on SQLite
and PostgreSQL; the bytes SQLite stores per execution; and the export of 100,000 of them
(:mod:`bench.export`). QUICK: 100,000 and 10,000 executions, p95s of 50 requests rather than 300, and
30,000 exported from PostgreSQL."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from tests.support.postgres import free_port
from tests.support.processes import FLOWDECK, spawn

from bench.export import export_rows
from flowdeck.flowfiles import load_flow_text
from flowdeck.store import database
from flowdeck.store.flows import import_flow
from flowdeck.store.seed import refresh_statistics, seed_executions

OTHER_FLOWS = 20


def _flow(name: str) -> dict[str, Any]:
    nodes = "\n".join(f"  - {{id: step_{i}, type: transform, config: {{value: {i}}}}}" for i in range(10))
    return load_flow_text(f"name: {name}\nnodes:\n{nodes}\n").model_dump(exclude_none=True)


def seed(url: str, main: int, others: int) -> str:
    """Create the flows and their executions; the main flow's id."""
    db = database.open_database(url)
    database.upgrade(db)
    flow, _ = import_flow(db, _flow("big_flow"))
    seed_executions(db, flow, main, seed=1, analyze=False)
    for n in range(OTHER_FLOWS):
        other, _ = import_flow(db, _flow(f"other_{n:02d}"))
        seed_executions(db, other, others // OTHER_FLOWS, seed=n + 2, analyze=False)
    if db.dialect.name == "sqlite":
        refresh_statistics(db)
    else:
        # what autovacuum would do in the next minutes, done now: the figures are of a settled database
        with db.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql(
                "VACUUM (ANALYZE) executions, execution_steps, execution_counts, execution_params"
            )
    db.dispose()
    return flow.id


@contextlib.contextmanager
def serving(url: str) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "FLOWDECK_DATABASE_URL": url}
    process = spawn([*FLOWDECK, "serve", "--port", str(port)], port=port, env=env)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(30)


def p95_ms(call: Callable[[], httpx.Response], times: int) -> float:
    for _ in range(5):
        call()
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        response = call()
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
    return round(sorted(samples)[int(len(samples) * 0.95) - 1], 2)


def measure(url: str, label: str, flow_id: str, *, times: int) -> list[dict[str, Any]]:
    with serving(url) as base, httpx.Client(base_url=base, timeout=60) as http:
        first = http.get(f"/api/flows/{flow_id}/executions").json()
        pages, total = first["pages"], first["total"]
        ids = [item["id"] for item in first["items"]]
        ids += [
            item["id"]
            for item in http.get(f"/api/flows/{flow_id}/executions", params={"page": pages // 2}).json()[
                "items"
            ]
        ]
        rng = random.Random(7)
        page1 = p95_ms(lambda: http.get(f"/api/flows/{flow_id}/executions"), times)
        last = p95_ms(lambda: http.get(f"/api/flows/{flow_id}/executions", params={"page": pages}), times)
        detail = p95_ms(lambda: http.get(f"/api/executions/{rng.choice(ids)}"), times)
        searches = _searches(total, rng)
        search = p95_ms(lambda: http.get(f"/api/flows/{flow_id}/executions", params=next(searches)), times)
        combined = {"param.priority": "1", "status": "error"}
        with_status = p95_ms(lambda: http.get(f"/api/flows/{flow_id}/executions", params=combined), times)
        insights = p95_ms(lambda: http.get(f"/api/flows/{flow_id}/insights"), times)
    note = f"{total:,} executions of the flow, p95 of {times} sequential requests"
    return [
        {
            "name": f"param_search_p95_ms_{label}",
            "value": search,
            "unit": "ms",
            "note": "first page and total of param.order_id=X (1 match), param.customer=X (about 10) or "
            f"param.priority=1 (a third of all), in turn (goal <= 300); {note}",
        },
        {
            "name": f"param_status_search_p95_ms_{label}",
            "value": with_status,
            "unit": "ms",
            "note": f"param.priority=1 and status=error: a join over a third of all (budget 2,000); {note}",
        },
        {
            "name": f"insights_p95_ms_{label}",
            "value": insights,
            "unit": "ms",
            "note": f"per node and grouped errors of the latest 1,000 (goal <= 200); {note}",
        },
        {"name": f"list_page1_p95_ms_{label}", "value": page1, "unit": "ms", "note": note},
        {
            "name": f"list_last_page_p95_ms_{label}",
            "value": last,
            "unit": "ms",
            "note": f"page {pages}; {note}",
        },
        {"name": f"detail_p95_ms_{label}", "value": detail, "unit": "ms", "note": f"10 steps; {note}"},
    ]


def _searches(total: int, rng: random.Random) -> Iterator[dict[str, Any]]:
    """Argument searches as a person types them: one order (one match), one customer (a handful),
    a common value (a third of the flow)."""
    while True:
        yield {"param.order_id": f"ord-{rng.randrange(total):08d}"}
        yield {"param.customer": f"cust-{rng.randrange(10**5):05d}"}
        yield {"param.priority": str(rng.randrange(3))}


def usage_rows(url: str, flow_id: str, *, times: int) -> list[dict[str, Any]]:
    """The Usage tab's HTML (p95), and in Chromium the time from a click on an execution to its
    details on screen (median and p95)."""
    from playwright.sync_api import sync_playwright
    from tests.e2e.conftest import CHROMIUM_ARGS, chromium_path

    with serving(url) as base, httpx.Client(base_url=base, timeout=60) as http:
        usage = p95_ms(lambda: http.get(f"/flows/{flow_id}/usage"), times)
        clicks = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{base}/flows/{flow_id}/usage")
            items = page.locator("[data-testid=execution-item]")
            for n in range(40):
                item = items.nth(n % 20)
                execution_id = item.get_attribute("data-execution-id")
                started = time.perf_counter()
                item.locator("[data-select]").click()
                page.locator(f'[data-testid=execution-detail][data-execution-id="{execution_id}"]').wait_for()
                clicks.append((time.perf_counter() - started) * 1000)
            browser.close()
    clicks.sort()
    return [
        {
            "name": "usage_page_p95_ms_sqlite",
            "value": usage,
            "unit": "ms",
            "note": f"the Usage tab's HTML; p95 of {times}",
        },
        {
            "name": "ui_click_to_details_ms_sqlite",
            "value": round(clicks[len(clicks) // 2], 1),
            "unit": "ms",
            "note": f"Chromium: from a click on an execution to its details; p95 {clicks[37]:.1f} ms",
        },
    ]


def bytes_per_execution(path: Path) -> float:
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        count = connection.execute("SELECT count(*) FROM executions").fetchone()[0]
    return path.stat().st_size / count


def scale_rows(sqlite_folder: Path, postgres_url: str, *, quick: bool) -> list[dict[str, Any]]:
    main, others = (100_000, 10_000) if quick else (1_000_000, 100_000)
    times = 50 if quick else 300
    rows: list[dict[str, Any]] = []
    path = sqlite_folder / "scale.db"
    # neither seeding is measured: the two databases are filled at once, one in another process
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        postgres_seeded = pool.submit(seed, postgres_url, main, others)
        started = time.perf_counter()
        flow_id = seed(f"sqlite:///{path}", main, others)
        seeded_in = time.perf_counter() - started
        postgres_flow_id = postgres_seeded.result()
    rows += measure(f"sqlite:///{path}", "sqlite", flow_id, times=times)
    rows += usage_rows(f"sqlite:///{path}", flow_id, times=times)
    rows += export_rows(f"sqlite:///{path}", flow_id, main)
    rows.append(
        {
            "name": "bytes_per_execution_sqlite",
            "value": round(bytes_per_execution(path)),
            "unit": "bytes",
            "note": f"database file / {main + others:,} executions of 10 steps (~300 bytes of output each); "
            f"seeded in {seeded_in:.0f} s, beside PostgreSQL's seeding",
        }
    )
    rows += measure(postgres_url, "postgres", postgres_flow_id, times=times)
    # QUICK exports fewer from PostgreSQL, which has no row in the contract: the run stays under 3 minutes
    rows += export_rows(
        postgres_url, postgres_flow_id, main, label="postgres", rows=30_000 if quick else 100_000
    )
    return rows
