"""flowdeck as a separate process, started the one way a user starts it (``python -m flowdeck``):
for what only a real process shows (stdio, a kill, several servers, what another process records).
Where a process proves nothing, tests run the CLI in-process (:mod:`tests.support.cli`) or serve the
app in a thread (:mod:`tests.support.server`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from mcp import StdioServerParameters

from tests.support import EXAMPLES
from tests.support.postgres import free_port

FLOWDECK = [sys.executable, "-m", "flowdeck"]


def flowdeck_env(database_url: str, **settings: Any) -> dict[str, str]:
    """This environment, with the database and any ``FLOWDECK_*`` setting given (``heartbeat_s=1``)."""
    env = {**os.environ, "FLOWDECK_DATABASE_URL": database_url}
    env.update({f"FLOWDECK_{name.upper()}": str(value) for name, value in settings.items()})
    return env


def run_flowdeck(*args: str, env: dict[str, str], **run: Any) -> subprocess.CompletedProcess[str]:
    """One command, to its end; its output as text."""
    options: dict[str, Any] = {"capture_output": True, "text": True, "timeout": 60, **run}
    return subprocess.run([*FLOWDECK, *args], env=env, **options)


def start_flowdeck(*args: str, env: dict[str, str], **popen: Any) -> subprocess.Popen[bytes]:
    """One command, left running."""
    return subprocess.Popen([*FLOWDECK, *args], env=env, **popen)


def stdio_params(database_url: str, *args: str) -> StdioServerParameters:
    """``flowdeck mcp`` as a desktop client starts it."""
    return StdioServerParameters(
        command=sys.executable, args=["-m", "flowdeck", "mcp", *args], env=flowdeck_env(database_url)
    )


def wait_healthy(
    process: subprocess.Popen[Any], base: str, timeout_s: float = 60, path: str = "/health"
) -> None:
    """Until the server's health route (``path``) answers; a server that exits or never answers
    fails the test."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{base}{path}", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the server did not start: {' '.join(map(str, process.args))}")
        time.sleep(0.05)


def spawn(command: list[str], *, port: int, **popen: Any) -> subprocess.Popen[bytes]:
    """Start any server command on ``port`` and return once its /health answers."""
    process = subprocess.Popen(command, **popen)
    wait_healthy(process, f"http://127.0.0.1:{port}")
    return process


@dataclass
class ServedProcess:
    process: subprocess.Popen[bytes]
    base: str  # http://127.0.0.1:PORT

    @property
    def mcp(self) -> str:
        return f"{self.base}/mcp"


@contextmanager
def serving(
    database_url: str,
    count: int = 1,
    *,
    flows: tuple[Path, ...] = (EXAMPLES,),
    cwd: Path | None = None,
    stderr: Any = None,
    **settings: Any,
) -> Iterator[list[ServedProcess]]:
    """``count`` ``flowdeck serve`` processes on one database, started together; killed at the end."""
    env = flowdeck_env(database_url, **settings)
    served: list[ServedProcess] = []
    try:
        for _ in range(count):
            port = free_port()
            flow_args = ["--flows", *map(str, flows)] if flows else []
            process = start_flowdeck(
                "serve", "--port", str(port), *flow_args, env=env, cwd=cwd, stderr=stderr
            )
            served.append(ServedProcess(process, f"http://127.0.0.1:{port}"))
        for one in served:
            wait_healthy(one.process, one.base)
        yield served
    finally:
        for one in served:
            if one.process.poll() is None:
                one.process.kill()
            one.process.wait(30)
