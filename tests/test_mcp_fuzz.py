"""Hostile clients at /mcp: bytes that are not JSON, JSON that is not JSON-RPC, requests of the wrong
shape, tools called with anything at all, huge and deeply nested arguments, flows whose templates
make huge values or never end. Every answer is a clear 4xx or a JSON-RPC error or result (never a
5xx), the server stays up, and every call that reached a flow is recorded."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from flowdeck.settings import Settings
from flowdeck.store import database
from flowdeck.store.reads import get_execution, list_executions
from tests.support import EXAMPLES
from tests.support.server import served

HOSTILE_FLOWS = {
    "huge_output.yaml": """name: huge_output
nodes:
  - {id: make, type: transform, config: {value: "{{ 'x' * (input.mib * 1048576) }}"}}
""",
    "forever.yaml": """name: forever
nodes:
  - id: spin
    type: transform
    config: {value: "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"}
""",
}
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


class Session:
    """A 2025-06-18 session spoken in raw HTTP, so that anything can be sent in it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx2.Client(timeout=30)
        headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
        hello = {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "fuzz", "version": "1"},
        }
        response = self.http.post(
            url, json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": hello}, headers=headers
        )
        self.headers = {
            **headers,
            "mcp-session-id": response.headers["mcp-session-id"],
            "MCP-Protocol-Version": "2025-06-18",
        }
        self.post(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}).encode())

    def post(self, body: bytes) -> httpx2.Response:
        response = self.http.post(self.url, content=body, headers=self.headers)
        assert response.status_code < 500, f"{response.status_code}: {response.text[:300]}"
        assert_no_internals(response)
        return response

    def call(self, params: Any) -> dict[str, Any]:
        """A tools/call; its one JSON-RPC answer."""
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}).encode()
        return answer(self.post(body))


def assert_no_internals(response: httpx2.Response) -> None:
    """No traceback and no source path of the server's in what a client reads."""
    for mark in ("Traceback", 'File "', "site-packages"):
        assert mark not in response.text, response.text[:500]


def answer(response: httpx2.Response) -> dict[str, Any]:
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        data = [line[5:] for line in response.text.splitlines() if line.startswith("data:")]
        return json.loads(data[-1])
    return response.json()


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[str, Engine]]:
    with tempfile.TemporaryDirectory() as folder:
        flows = Path(folder) / "flows"
        flows.mkdir()
        for name, text in HOSTILE_FLOWS.items():
            (flows / name).write_text(text)
        url = f"sqlite:///{folder}/fuzz.db"
        with served(Settings(database_url=url), [EXAMPLES, flows]) as base:
            db = database.open_database(url)
            yield base, db
            db.dispose()


@pytest.fixture(scope="module")
def session(live: tuple[str, Engine]) -> Session:
    return Session(f"{live[0]}/mcp")


def assert_up(base: str) -> None:
    assert httpx2.get(f"{base}/health", timeout=10).status_code == 200


def test_bytes_that_are_not_json_rpc_get_a_json_rpc_error(live: tuple[str, Engine]) -> None:
    base, _ = live
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}

    http = httpx2.Client(timeout=30)

    @given(body=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
    @FUZZ
    def post(body: bytes) -> None:
        response = http.post(f"{base}/mcp", content=body, headers=headers)
        assert 400 <= response.status_code < 500, response.status_code
        assert_no_internals(response)
        error = response.json()["error"]
        assert error["code"] < 0 and error["message"], error

    post()
    assert_up(base)


def test_json_rpc_of_the_wrong_shape_gets_an_error_not_a_failure(session: Session) -> None:
    @given(
        message=JSON
        | st.fixed_dictionaries(
            {"jsonrpc": st.just("2.0") | JSON},
            optional={
                "id": JSON,
                "method": st.sampled_from(["tools/call", "tools/list", "ping"]) | JSON,
                "params": JSON,
            },
        )
    )
    @FUZZ
    def post(message: Any) -> None:
        session.post(json.dumps(message).encode())

    post()
    assert answer(session.post(b'{"jsonrpc": "2.0", "id": 7, "method": "ping"}')) == {
        "jsonrpc": "2.0",
        "id": 7,
        "result": {},
    }


def test_any_tool_call_is_answered_and_every_one_that_reached_a_flow_is_recorded(
    live: tuple[str, Engine], session: Session
) -> None:
    _, db = live
    before = list_executions(db).total
    recorded: list[str] = []

    @given(
        name=st.sampled_from(["hello", "order_quote", "charge_card", "nope"]) | st.text(max_size=10),
        arguments=st.dictionaries(st.text(max_size=8), JSON, max_size=4) | JSON,
    )
    @FUZZ
    def call(name: str, arguments: Any) -> None:
        reply = session.call({"name": name, "arguments": arguments})
        assert ("result" in reply) != ("error" in reply), reply
        if "result" in reply:
            execution_id = reply["result"]["_meta"]["flowdeck/execution_id"]
            record = get_execution(db, execution_id)
            assert record.status == ("error" if reply["result"]["isError"] else "fulfilled")
            recorded.append(execution_id)
        else:
            assert reply["error"]["message"]

    call()
    assert recorded, "no generated call reached a flow"
    assert list_executions(db).total - before == len(recorded)


def test_deeply_nested_and_malformed_arguments(live: tuple[str, Engine], session: Session) -> None:
    base, db = live
    nested = b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "hello", "arguments": '
    too_deep = session.post(nested + b'{"name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}}")
    assert answer(too_deep)["error"]["code"] == -32700
    broken = session.post(nested + b'{"name": "\xff\xfe"}}}')
    assert answer(broken)["error"]["code"] == -32700
    deep = json.loads("[" * 100 + "]" * 100)
    refused = session.call({"name": "hello", "arguments": {"name": "x", "deep": deep}})
    assert refused["result"]["isError"] is True
    assert "nested" in refused["result"]["content"][0]["text"]
    assert get_execution(db, refused["result"]["_meta"]["flowdeck/execution_id"]).status == "error"
    assert_up(base)


def test_arguments_that_are_not_text_are_refused_and_recorded(
    live: tuple[str, Engine], session: Session
) -> None:
    """JSON can escape a lone surrogate ("\\ud800"), which is not text: no encoder can write it. A
    2025 session's parser refuses the message; a 2026-07-28 request reaches the flow, whose call is
    refused and recorded with U+FFFD in its place."""
    base, db = live
    arguments = {"name": "Ad\ud800a", "\udfffkey": 1}
    assert session.call({"name": "hello", "arguments": arguments})["error"]["code"] == -32700
    envelope = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    body = {"name": "hello", "arguments": arguments, "_meta": envelope}
    headers = {
        "Accept": "application/json, text/event-stream", "Content-Type": "application/json",
        "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "hello",
    }  # fmt: skip
    message = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": body})
    reply = answer(httpx2.post(f"{base}/mcp", content=message, headers=headers, timeout=30))
    assert reply["result"]["isError"] is True
    text = reply["result"]["content"][0]["text"]
    assert "name: a lone surrogate, which is not text (stored as U+FFFD)" in text
    record = get_execution(db, reply["result"]["_meta"]["flowdeck/execution_id"])
    assert record.status == "error" and record.error.type == "invalid_params"
    assert record.initial_params == {"name": "Ad\ufffda", "\ufffdkey": 1}
    assert record.params_preview == "name: Ad\ufffda"


def test_ten_megabyte_arguments_are_run_and_recorded_cut(live: tuple[str, Engine], session: Session) -> None:
    _, db = live
    reply = session.call({"name": "hello", "arguments": {"name": "Ada", "blob": "y" * (10 * 1024 * 1024)}})
    assert reply["result"]["structuredContent"]["greeting"] == "Hello, Ada!"
    record = get_execution(db, reply["result"]["_meta"]["flowdeck/execution_id"])
    assert record.params_truncated is True


def test_a_huge_node_output_is_returned_and_stored_cut(live: tuple[str, Engine], session: Session) -> None:
    base, db = live
    reply = session.call({"name": "huge_output", "arguments": {"mib": 8}})
    assert reply["result"]["isError"] is False
    record = get_execution(db, reply["result"]["_meta"]["flowdeck/execution_id"])
    assert record.status == "fulfilled"
    assert record.steps[0].output_truncated is True
    too_big = session.call({"name": "huge_output", "arguments": {"mib": 1000}})
    assert too_big["result"]["isError"] is True
    assert "would make a value of" in too_big["result"]["content"][0]["text"]
    assert_up(base)


def test_a_template_that_never_ends_is_stopped_and_recorded(
    live: tuple[str, Engine], session: Session
) -> None:
    base, db = live
    reply = session.call({"name": "forever", "arguments": {}})
    assert reply["result"]["isError"] is True
    assert "ran longer than 1 s, so it was stopped" in reply["result"]["content"][0]["text"]
    record = get_execution(db, reply["result"]["_meta"]["flowdeck/execution_id"])
    assert (record.status, record.error_node_id) == ("error", "spin")
    assert_up(base)
