"""Arize Phoenix, a tracing backend that accepts OTLP/HTTP and answers what it holds: the real
receiver the trace tests export to. It lives in a virtualenv of its own (`make phoenix`), never
among flowdeck's dependencies."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.support import ROOT
from tests.support.postgres import free_port
from tests.support.processes import wait_healthy

PHOENIX = ROOT / ".cache" / "phoenix" / "bin" / "phoenix"


@contextmanager
def phoenix(folder: Path) -> Iterator[str]:
    """A Phoenix on a free loopback port, its data in ``folder``; its base URL (OTLP/HTTP takes
    spans at ``/v1/traces``)."""
    if not PHOENIX.exists():
        raise RuntimeError(f"{PHOENIX} is missing: run `make phoenix` (make test does)")
    port = free_port()
    env = {
        **os.environ,
        "PHOENIX_WORKING_DIR": str(folder),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(free_port()),
        "PHOENIX_TELEMETRY_ENABLED": "false",
    }
    log = (folder / "phoenix.log").open("wb")
    process = subprocess.Popen([str(PHOENIX), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(process, base, timeout_s=120, path="/healthz")  # its log: folder / "phoenix.log"
        yield base
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def trace(base: str, trace_id: str, names: set[str], timeout_s: float = 30) -> list[dict[str, Any]]:
    """The spans Phoenix holds of one trace, once it holds a span of each of ``names`` (the
    processes of a trace export on their own schedules)."""
    deadline = time.monotonic() + timeout_s
    while True:
        spans, cursor = [], None
        while True:
            params: dict[str, Any] = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
            page = httpx.get(f"{base}/v1/projects/default/spans", params=params, timeout=10).json()
            spans += [span for span in page["data"] if span["context"]["trace_id"] == trace_id]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        if names <= {span["name"] for span in spans} or time.monotonic() > deadline:
            return spans
        time.sleep(0.3)
