"""Traces in a real backend: two flowdeck processes exporting over OTLP/HTTP to Arize Phoenix, and a
composed call (a flow node, an mcp node into the second flowdeck, an http node) read back from what
Phoenix holds, as one trace with the right parents and statuses. Servers run as processes of their
own: a tracer provider is set for a whole process."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client

from tests.support.phoenix import phoenix, trace
from tests.support.postgres import free_port
from tests.support.processes import flowdeck_env, start_flowdeck, wait_healthy
from tests.support.remotes import json_endpoint, servers_file

HELPER_FLOWS = {
    "remote_double.yaml": """
name: remote_double
input_schema: {type: object, properties: {n: {type: integer}}, required: [n]}
nodes:
  - {id: double, type: transform, config: {value: "{{ input.n * 2 }}"}}
""",
}
FLOWS = {
    "child_inc.yaml": """
name: child_inc
input_schema: {type: object, properties: {n: {type: integer}}, required: [n]}
nodes:
  - {id: inc, type: transform, config: {value: "{{ input.n + 1 }}"}}
""",
    "composed.yaml": """
name: composed
input_schema: {type: object, properties: {url: {type: string}}, required: [url]}
nodes:
  - {id: first, type: transform, config: {value: 20}}
  - {id: run_child, type: flow, config: {flow: child_inc, arguments: {n: "{{ nodes.first }}"}}}
  - {id: ask, type: mcp, config: {server: helper, tool: remote_double, arguments: {n: "{{ nodes.run_child }}"}}}
  - {id: fetch, type: http, config: {url: "{{ input.url }}"}}
""",
    "boom.yaml": """
name: boom
nodes:
  - id: shaky
    type: fail
    config: {message: "not today"}
    retry: {attempts: 2}
    on_error: continue
  - {id: explode, type: fail, config: {message: boom}}
""",
}


@dataclass
class Stack:
    phoenix: str
    main: str  # the flowdeck under test
    helper: str  # the second flowdeck, called by the mcp node
    echo: str  # an http endpoint that keeps the headers it was sent
    headers: list[dict[str, str]]


def _serve(env: dict[str, str], flows: Path, folder: Path, *more: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log = (folder / f"flowdeck-{port}.log").open("wb")
    process = start_flowdeck("serve", "--port", str(port), "--flows", str(flows), *more, env=env, stderr=log)
    wait_healthy(process, f"http://127.0.0.1:{port}")
    return process, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with phoenix(tmp_path_factory.mktemp("phoenix")) as base:
        yield base


@pytest.fixture(scope="module")
def echo() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """An HTTP endpoint that answers JSON and keeps the headers of each request."""
    with json_endpoint(lambda _: 200) as (url, _, headers):
        yield url, headers


def traced(database_url: str, backend: str, **more: str) -> dict[str, str]:
    return {
        **flowdeck_env(database_url),
        "OTEL_EXPORTER_OTLP_ENDPOINT": backend,
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # export within a tenth of a second (the default is 5 s)
        **more,
    }


@pytest.fixture(scope="module")
def stack(
    module_database_url: str,
    backend: str,
    echo: tuple[str, list[dict[str, str]]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("traced")
    (folder / "helper").mkdir()
    (folder / "main").mkdir()
    for name, text in HELPER_FLOWS.items():
        (folder / "helper" / name).write_text(text)
    for name, text in FLOWS.items():
        (folder / "main" / name).write_text(text)
    started = []
    try:
        helper_env = traced(f"sqlite:///{folder / 'helper.db'}", backend, OTEL_SERVICE_NAME="helper")
        started.append(_serve(helper_env, folder / "helper", folder))
        helper = started[-1][1]
        servers = servers_file(folder, {"helper": {"url": f"{helper}/mcp"}})
        main_env = traced(
            module_database_url, backend, FLOWDECK_TRACE_URL=f"{backend}/projects/default/traces/{{trace_id}}"
        )
        started.append(_serve(main_env, folder / "main", folder, "--servers", str(servers)))
        yield Stack(backend, started[-1][1], helper, echo[0], echo[1])
    finally:
        for process, _ in started:
            process.terminate()
            process.wait(30)


def _logs(folder: Path) -> str:
    return "".join(path.read_text() for path in folder.glob("flowdeck-*.log"))


def _tree(spans: list[dict[str, Any]]) -> dict[str, tuple[str | None, str]]:
    """Each span's name: its parent's name (None for the root) and its status."""
    names = {span["context"]["span_id"]: span["name"] for span in spans}
    return {span["name"]: (names.get(span["parent_id"]), span["status_code"]) for span in spans}


async def test_a_composed_call_is_one_trace_with_every_hop_nested(stack: Stack) -> None:
    async with Client(f"{stack.main}/mcp") as client:
        result = await client.call_tool("composed", {"url": stack.echo})
    assert not result.is_error, result.content
    execution = httpx.get(f"{stack.main}/api/executions/{result.meta['flowdeck/execution_id']}").json()
    trace_id = execution["trace_id"]
    assert len(trace_id) == 32 and int(trace_id, 16)
    expected = {
        "tools/call composed": "POST /{path}",
        "flow composed": "tools/call composed",
        "node first": "flow composed",
        "node run_child": "flow composed",
        "flow child_inc": "node run_child",  # a child execution, nested in the node that ran it
        "node inc": "flow child_inc",
        "node ask": "flow composed",
        "MCP send tools/call remote_double": "node ask",  # the SDK's client span, in the mcp node
        "tools/call remote_double": "MCP send tools/call remote_double",  # the second flowdeck
        "flow remote_double": "tools/call remote_double",
        "node double": "flow remote_double",
        "node fetch": "flow composed",
    }
    spans = trace(stack.phoenix, trace_id, set(expected) | set(expected.values()))  # parents too
    tree = _tree(spans)
    assert {name: tree[name][0] for name in expected if name in tree} == expected
    # anything else is the mcp node opening its session with the second flowdeck, within the node
    for name in set(tree) - set(expected) - {"POST /{path}"}:
        chain = [name]
        while chain[-1] is not None and chain[-1] != "node ask":
            chain.append(tree[chain[-1]][0])
        assert chain[-1] == "node ask", chain
    assert all(status != "ERROR" for _, status in tree.values())
    flow = next(span for span in spans if span["name"] == "flow composed")
    assert flow["attributes"]["flowdeck.execution_id"] == execution["id"]
    assert flow["attributes"]["flowdeck.flow"] == "composed"
    node = next(span for span in spans if span["name"] == "node ask")
    assert (node["attributes"]["flowdeck.node_id"], node["attributes"]["flowdeck.node_type"]) == (
        "ask",
        "mcp",
    )
    # the second flowdeck's execution is in the same trace; the http node sent the trace along
    remote = next(step for step in execution["steps"] if step["node_id"] == "ask")["remote"]
    assert httpx.get(f"{stack.helper}/api/executions/{remote['execution_id']}").json()["trace_id"] == trace_id
    fetch = next(span for span in spans if span["name"] == "node fetch")
    assert stack.headers[-1]["traceparent"].split("-")[1:3] == [trace_id, fetch["context"]["span_id"]]
    # the detail panel links to the trace
    panel = httpx.get(f"{stack.main}/executions/{execution['id']}/panel").text
    assert f'href="{stack.phoenix}/projects/default/traces/{trace_id}"' in panel


async def test_failures_are_errors_and_each_try_is_a_span(stack: Stack) -> None:
    async with Client(f"{stack.main}/mcp") as client:
        result = await client.call_tool("boom", {})
    assert result.is_error
    execution = httpx.get(f"{stack.main}/api/executions/{result.meta['flowdeck/execution_id']}").json()
    spans = trace(
        stack.phoenix, execution["trace_id"], {"flow boom", "try 2", "node explode", "tools/call boom"}
    )
    tree = _tree(spans)
    assert tree["flow boom"] == ("tools/call boom", "ERROR")
    assert tree["node shaky"] == ("flow boom", "ERROR")
    assert tree["try 1"] == ("node shaky", "ERROR") and tree["try 2"] == ("node shaky", "ERROR")
    assert tree["node explode"] == ("flow boom", "ERROR")
    assert tree["tools/call boom"][1] == "ERROR"  # the SDK's span says the tool failed too


async def test_a_traceparent_sent_in_meta_is_continued(stack: Stack) -> None:
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    async with Client(f"{stack.main}/mcp") as client:
        result = await client.call_tool(
            "child_inc", {"n": 1}, meta={"traceparent": f"00-{trace_id}-{parent}-01"}
        )
    execution = httpx.get(f"{stack.main}/api/executions/{result.meta['flowdeck/execution_id']}").json()
    assert execution["trace_id"] == trace_id
    spans = trace(stack.phoenix, trace_id, {"tools/call child_inc", "flow child_inc", "node inc"})
    call = next(span for span in spans if span["name"] == "tools/call child_inc")
    assert call["parent_id"] == parent


async def test_an_endpoint_that_is_down_never_slows_or_fails_a_call(
    tmp_path: Path, module_database_url: str
) -> None:
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "child_inc.yaml").write_text(FLOWS["child_inc.yaml"])
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = traced(module_database_url, closed, OTEL_EXPORTER_OTLP_TIMEOUT="1")  # gives up after 1 s, not 10
    process, base = _serve(env, tmp_path / "flows", tmp_path)
    try:
        took = []
        async with Client(f"{base}/mcp") as client:
            for n in range(20):
                started = time.perf_counter()
                result = await client.call_tool("child_inc", {"n": n})
                took.append(time.perf_counter() - started)
                assert not result.is_error and result.content[0].text == str(n + 1)
                await anyio.sleep(0.05)
        await anyio.sleep(3)  # the exporter has tried, and failed, several times by now
    finally:
        process.terminate()
        process.wait(30)
    assert sorted(took)[len(took) // 2] < 0.25
    log = _logs(tmp_path)
    assert log.count("traces are not reaching the OTLP endpoint") == 1, log


async def test_without_an_endpoint_nothing_is_traced(tmp_path: Path, module_database_url: str) -> None:
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "child_inc.yaml").write_text(FLOWS["child_inc.yaml"])
    process, base = _serve(flowdeck_env(module_database_url), tmp_path / "flows", tmp_path)
    try:
        async with Client(f"{base}/mcp") as client:
            result = await client.call_tool("child_inc", {"n": 1})
        execution = httpx.get(f"{base}/api/executions/{result.meta['flowdeck/execution_id']}").json()
    finally:
        process.terminate()
        process.wait(30)
    assert execution["status"] == "fulfilled" and execution["trace_id"] is None
