"""Export at scale: rows per second of ``GET /api/executions/export`` (NDJSON, whole executions with
their 10 steps; and CSV) over 100,000 executions of a seeded database, and how much the server's
memory grew meanwhile (its peak resident set after, less its resident set before)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
from tests.support.postgres import free_port
from tests.support.processes import FLOWDECK, spawn

from flowdeck.times import DAY_US, iso, now_us

ROWS = 100_000
SPREAD_DAYS = 14  # the seeded executions' spread (flowdeck.store.seed)


def _memory_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def _count_lines(response: httpx.Response) -> int:
    """Lines counted by their ends in the bytes as they come: splitting them into Python strings cost
    this client about 15 µs a line, on the two cores the server has too. (The count is checked
    against the API's total below.)"""
    return sum(chunk.count(b"\n") for chunk in response.iter_raw())


def export_rows(
    url: str, flow_id: str, flow_total: int, *, label: str = "sqlite", rows: int = ROWS
) -> list[dict[str, Any]]:
    """``flow_total`` executions of the flow, spread evenly: a time range of about ``rows`` of them."""
    since = iso(now_us() - int(SPREAD_DAYS * DAY_US * min(1.0, rows / flow_total)))
    port = free_port()
    process = spawn(
        [*FLOWDECK, "serve", "--port", str(port)], port=port, env={**os.environ, "FLOWDECK_DATABASE_URL": url}
    )
    base, query = f"http://127.0.0.1:{port}", {"flow_id": flow_id, "since": since}
    rates: dict[str, float] = {}
    try:
        with httpx.Client(base_url=base, timeout=600) as http:
            count = http.get(
                f"/api/flows/{flow_id}/executions", params={"since": since, "per_page": 1}
            ).json()["total"]
            before_kb = _memory_kb(process.pid, "VmRSS")
            for form in ("ndjson", "csv"):
                started = time.perf_counter()
                with http.stream(
                    "GET", "/api/executions/export", params={**query, "format": form}
                ) as response:
                    assert response.status_code == 200, response.read()
                    lines = _count_lines(response)
                rates[form] = (lines - (form == "csv")) / (time.perf_counter() - started)
                assert lines - (form == "csv") == count, (form, lines, count)
            growth_mb = (_memory_kb(process.pid, "VmHWM") - before_kb) / 1024
    finally:
        process.terminate()
        process.wait(30)
    return [
        {
            "name": f"export_rows_per_s_{label}",
            "value": round(rates["ndjson"]),
            "unit": "rows/s",
            "note": f"NDJSON (the default): whole executions with their 10 steps and data, {count:,} of"
            " them, streamed over HTTP (the client counts line ends)"
            + (" (goal >= 20,000)" if label == "sqlite" else ""),
        },
        {
            "name": f"export_csv_rows_per_s_{label}",
            "value": round(rates["csv"]),
            "unit": "rows/s",
            "note": f"CSV: one summary per row, the same {count:,} executions",
        },
        {
            "name": f"export_rss_growth_mb_{label}",
            "value": round(growth_mb, 1),
            "unit": "MB",
            "note": "the server's peak resident memory during both exports, less its memory before"
            + (" (goal <= 50)" if label == "sqlite" else ""),
        },
    ]
