"""MCP servers for flowdeck's mcp nodes to call: the reference "everything" server from npm (which
`make test` installs into .cache/, over stdio and over streamable HTTP), and small helpers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.support import ROOT
from tests.support.postgres import free_port

EVERYTHING = (
    ROOT
    / ".cache"
    / "npm"
    / "node_modules"
    / "@modelcontextprotocol"
    / "server-everything"
    / "dist"
    / "index.js"
)


def everything_stdio() -> dict[str, Any]:
    """The servers file's entry that starts the everything server over stdio."""
    if not EVERYTHING.exists():
        raise RuntimeError(f"{EVERYTHING} is missing: `make everything` (part of `make test`) installs it")
    return {"command": "node", "args": [str(EVERYTHING), "stdio"]}


@contextmanager
def everything_http() -> Iterator[str]:
    """The everything server over streamable HTTP, on a free port: its URL."""
    everything_stdio()
    port = free_port()
    env = {**os.environ, "PORT": str(port)}
    process = subprocess.Popen(
        ["node", str(EVERYTHING), "streamableHttp"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the everything server did not start over HTTP")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.kill()
        process.wait(10)


def tcp_connections_to(port: int) -> int:
    """Sockets of this machine connected to ``port`` on loopback, TIME_WAIT ones included (Linux)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                remote = line.split()[2]
                if int(remote.rsplit(":", 1)[1], 16) == port:
                    count += 1
    return count


def servers_file(folder: Path, servers: dict[str, Any]) -> Path:
    path = folder / "servers.json"
    path.write_text(json.dumps({"mcpServers": servers}))
    return path


def kill_stdio_servers() -> list[int]:
    """Kill the everything servers this process started over stdio (flowdeck, served in a thread of
    the tests, is their parent): the pids killed."""
    killed = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if parent == os.getpid() and str(EVERYTHING) in command and command.rstrip().endswith("stdio"):
            os.kill(int(entry), signal.SIGKILL)
            killed.append(int(entry))
    return killed


@contextmanager
def flaky_http(failures: int) -> Iterator[tuple[str, list[int]]]:
    """An HTTP endpoint that answers 503 to its first ``failures`` requests, then 200 with JSON: its
    URL, and the statuses it answered."""
    with json_endpoint(lambda n: 503 if n <= failures else 200) as (url, answered, _):
        yield url, answered


@contextmanager
def json_endpoint(
    status_of: Callable[[int], int],
) -> Iterator[tuple[str, list[int], list[dict[str, str]]]]:
    """An HTTP endpoint that answers request n (from 1) with ``status_of(n)`` and a little JSON: its
    URL, the statuses it answered and the headers of each request (names in lower case)."""
    answered: list[int] = []
    headers: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            headers.append({key.lower(): value for key, value in self.headers.items()})
            status = status_of(len(answered) + 1)
            answered.append(status)
            body = json.dumps({"try": len(answered)}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", answered, headers
    finally:
        server.shutdown()
        thread.join(10)
