"""Each built-in node type, run by the db; ``http`` against a local server started here."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from flowdeck.engine import NodeType, NullObserver, PreparedFlow, Run, node_types, run_flow
from flowdeck.flowfiles import load_flow_text


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        return None

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.startswith("/json"):
            payload = {"path": self.path, "agent": self.headers.get("X-Test")}
            self._send(200, json.dumps(payload).encode(), "application/json")
        elif self.path == "/missing":
            self._send(404, b'{"detail": "not here"}', "application/json")
        elif self.path == "/slow":
            time.sleep(1.5)
            self._send(200, b"late", "text/plain")
        elif self.path == "/text":
            self._send(200, b"plain words", "text/plain; charset=utf-8")
        elif self.path == "/badjson":
            self._send(200, b"{not json", "application/json")
        elif self.path == "/big":
            self._send(200, b"x" * 5000, "text/plain")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self._send(201, json.dumps({"got": json.loads(body)}).encode(), "application/json")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


async def run_one(
    node_yaml: str, params: dict[str, Any] | None = None, schema: str = "{type: object}"
) -> Run:
    flow = load_flow_text(f"name: t\ninput_schema: {schema}\nnodes:\n  - {node_yaml}\n")
    return await run_flow(PreparedFlow(flow), params or {}, NullObserver(), execution_id="e1")


def test_the_built_in_types_are_entry_points() -> None:
    registry = node_types()
    assert {"transform", "delay", "fail", "http"} <= set(registry)
    assert all(isinstance(node, NodeType) for node in registry.values())


async def test_transform_renders_its_value() -> None:
    run = await run_one(
        "{id: a, type: transform, config: {value: {n: '{{ input.n + 1 }}', s: 'id {{ execution.id }}'}}}",
        {"n": 1},
    )
    assert run.status == "fulfilled"
    assert run.output == {"n": 2, "s": "id e1"}


async def test_delay_waits_and_reports() -> None:
    started = time.perf_counter()
    run = await run_one("{id: a, type: delay, config: {seconds: 0.05}}")
    assert time.perf_counter() - started >= 0.05
    assert run.output == {"slept_s": 0.05}


async def test_delay_seconds_from_a_template_are_checked_when_run() -> None:
    run = await run_one("{id: a, type: delay, config: {seconds: '{{ input.s }}'}}", {"s": -2})
    assert run.status == "error"
    assert run.error.node_id == "a"
    assert "seconds" in run.error.message and "greater than or equal to 0" in run.error.message


async def test_fail_fails_with_its_rendered_message() -> None:
    run = await run_one("{id: boom, type: fail, config: {message: 'no {{ input.what }}'}}", {"what": "luck"})
    assert (run.status, run.error.type, run.error.node_id, run.error.message) == (
        "error",
        "node_error",
        "boom",
        "no luck",
    )


async def test_http_200_json(server: str) -> None:
    node = f"{{id: get, type: http, config: {{url: '{server}/json', query: {{q: '{{{{ input.q }}}}'}}, headers: {{X-Test: 'yes'}}}}}}"
    run = await run_one(node, {"q": "a b"})
    assert run.status == "fulfilled"
    assert run.output["status"] == 200
    assert run.output["body"] == {"path": "/json?q=a+b", "agent": "yes"}
    assert run.output["headers"]["content-type"] == "application/json"


async def test_http_post_json(server: str) -> None:
    run = await run_one(
        f"{{id: post, type: http, config: {{method: POST, url: '{server}/echo', json: {{a: '{{{{ input.a }}}}'}}}}}}",
        {"a": [1]},
    )
    assert run.output["status"] == 201
    assert run.output["body"] == {"got": {"a": [1]}}


async def test_http_404_fails_the_node_by_default(server: str) -> None:
    run = await run_one(f"{{id: get, type: http, config: {{url: '{server}/missing'}}}}")
    assert run.status == "error"
    assert run.error.node_id == "get"
    assert "HTTP 404 Not Found" in run.error.message


async def test_http_404_is_an_output_without_raise_for_status(server: str) -> None:
    run = await run_one(
        f"{{id: get, type: http, config: {{url: '{server}/missing', raise_for_status: false}}}}"
    )
    assert run.status == "fulfilled"
    assert run.output["status"] == 404
    assert run.output["body"] == {"detail": "not here"}


async def test_http_timeout_is_a_node_error(server: str) -> None:
    started = time.perf_counter()
    run = await run_one(f"{{id: get, type: http, config: {{url: '{server}/slow', timeout_s: 0.2}}}}")
    assert time.perf_counter() - started < 1.4
    assert run.status == "error"
    assert run.error.message.endswith("timed out after 0.2 s")


async def test_http_non_json_bodies_stay_text(server: str) -> None:
    run = await run_one(f"{{id: get, type: http, config: {{url: '{server}/text'}}}}")
    assert run.output["body"] == "plain words"
    run = await run_one(f"{{id: get, type: http, config: {{url: '{server}/badjson'}}}}")
    assert run.output["body"] == "{not json"


async def test_http_refuses_a_body_over_its_limit(server: str) -> None:
    run = await run_one(f"{{id: get, type: http, config: {{url: '{server}/big', max_body_bytes: 1000}}}}")
    assert run.status == "error"
    assert "larger than 1000 bytes" in run.error.message


async def test_http_connection_refused_is_a_node_error() -> None:
    run = await run_one("{id: get, type: http, config: {url: 'http://127.0.0.1:1/'}}")
    assert run.status == "error"
    assert run.error.node_id == "get"
    assert "ConnectError" in run.error.message
