"""A flowdeck app served by uvicorn on a free loopback port, in a thread of the test process: real
HTTP, real MCP sessions, and the test can still look at the database directly. A separate
process is :mod:`tests.support.processes`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import uvicorn

from flowdeck.app import create_app
from flowdeck.settings import Settings
from tests.support.postgres import free_port


async def eventually(
    predicate: Callable[[], object], timeout_s: float = 10.0, interval_s: float = 0.05
) -> None:
    """Wait until ``predicate()`` is true (a database state reached by another thread or process)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout_s} s")
        await anyio.sleep(interval_s)


@contextmanager
def served(
    settings: Settings, flow_paths: Iterable[Path] = (), *, stateless: bool = False, port: int | None = None
) -> Iterator[str]:
    """Serve (on ``port``, or a free one), yield the base URL (``http://127.0.0.1:PORT``), stop."""
    port = port or free_port()
    app = create_app(settings, flow_paths=list(flow_paths), stateless=stateless)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="flowdeck-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
