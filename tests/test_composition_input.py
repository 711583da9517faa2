"""Bad input for composition, refused with every problem and its place: the servers file, and the
flows that name servers and flows or set a node's policy."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import httpx
import pytest

from flowdeck.errors import InvalidServers
from flowdeck.remote import HttpServer, StdioServer, load_servers
from flowdeck.settings import Settings
from tests.support.cli import flowdeck as run
from tests.support.server import served


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def problems(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(InvalidServers) as caught:
        load_servers(path, environ or {})
    return [str(problem) for problem in caught.value.problems]


def test_a_servers_file_in_the_desktop_format_with_variables(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "servers.json",
        """{"mcpServers": {
            "local": {"command": "node", "args": ["server.js", "--key=${KEY}"], "env": {"TOKEN": "${KEY}"},
                      "cwd": "/srv", "type": "stdio"},
            "remote": {"url": "https://tools.example.com/mcp", "headers": {"Authorization": "Bearer ${KEY}"}}
        }}""",
    )
    servers = load_servers(path, {"KEY": "s3cret"})
    assert servers["local"] == StdioServer(
        command="node", args=["server.js", "--key=s3cret"], env={"TOKEN": "s3cret"}, cwd="/srv"
    )
    assert servers["remote"] == HttpServer(
        url="https://tools.example.com/mcp", headers={"Authorization": "Bearer s3cret"}
    )


def test_a_servers_file_that_is_not_json_is_placed_by_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "servers.json", '{"mcpServers": {\n  "a": {"command": "x",}\n}}')
    assert problems(path) == [
        "line 2, column 24: not JSON: Expecting property name enclosed in double quotes"
    ]


def test_every_problem_of_a_servers_file_is_listed_with_its_place(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "servers.json",
        """{"mcpServers": {
            "nothing": {"args": ["x"]},
            "both": {"command": "x", "url": "http://h/mcp"},
            "badurl": {"url": "ftp://h/mcp"},
            "secret": {"url": "https://h/mcp", "headers": {"Authorization": "Bearer ${MISSING}"}},
            "notobject": 3,
            "emptycommand": {"command": ""}
        }}""",
    )
    assert problems(path) == [
        "mcpServers.nothing: needs a command (stdio) or a url (streamable HTTP)",
        "mcpServers.both: has both a command and a url: give one",
        "mcpServers.badurl.url: must be an http:// or https:// URL",
        "mcpServers.secret.headers.Authorization: the environment variable MISSING is not set",
        "mcpServers.notobject: must be an object with a command (stdio) or a url (streamable HTTP)",
        "mcpServers.emptycommand.command: String should have at least 1 character",
    ]


def test_a_file_without_mcp_servers(tmp_path: Path) -> None:
    assert problems(write(tmp_path, "s.json", '{"servers": {}}')) == [
        'mcpServers: must be an object of servers: {"NAME": {...}}'
    ]
    assert problems(tmp_path / "missing.json")[0].startswith("cannot read the file: ")


@pytest.fixture
def flowdeck(database_url: str):  # type: ignore[no-untyped-def]
    return partial(run, database_url=database_url)


def test_the_cli_says_what_is_wrong_with_a_servers_file(flowdeck, tmp_path: Path) -> None:
    bad = write(tmp_path, "servers.json", '{"mcpServers": {"x": {}}}')
    flow = write(tmp_path, "f.yaml", "name: f\nnodes: []\n")
    result = flowdeck("flows", "import", str(flow), "--servers", str(bad), ok=False)
    assert result.exit_code == 1
    assert "servers.json: 1 problem:\n  mcpServers.x: needs a command (stdio) or a url" in result.stderr
    served = flowdeck("serve", "--servers", str(bad), "--port", "1", ok=False)
    assert served.exit_code == 1 and "mcpServers.x: needs a command" in served.stderr


def test_import_refuses_unknown_servers_and_flows_and_bad_policies_with_their_places(
    flowdeck, tmp_path: Path
) -> None:
    servers = write(tmp_path, "servers.json", '{"mcpServers": {"known": {"command": "true"}}}')
    flow = write(
        tmp_path,
        "composed.yaml",
        """
name: composed
nodes:
  - {id: a, type: mcp, config: {server: unknown, tool: t}}
  - {id: b, type: flow, config: {flow: nowhere}}
  - id: c
    type: map
    config: {items: [1], concurrency: 0, node: {type: flow, config: {flow: "{{ item }}"}, retry: {attempts: 0}}}
  - {id: d, type: transform, retry: {attempts: 0, backoff_s: -1}, timeout_s: 0}
  - {id: e, type: map, config: {items: [1], node: {type: warp}}}
  - {id: f, type: map, config: {items: [1], node: {type: mcp, config: {tool: t}}}}
""",
    )
    result = flowdeck("flows", "import", str(flow), "--servers", str(servers), ok=False)
    assert result.exit_code == 1
    for line in [
        "nodes[2].config.concurrency: Input should be greater than or equal to 1",
        "nodes[2].config.node.retry.attempts: Input should be greater than or equal to 1",
        "nodes[3].retry.attempts: Input should be greater than or equal to 1",
        "nodes[3].retry.backoff_s: Input should be greater than or equal to 0",
        "nodes[3].timeout_s: Input should be greater than 0",
        "nodes[4].config.node.type: unknown node type 'warp'",
        "nodes[5].config.node.config.server: Field required",
    ]:
        assert line in result.stderr, result.stderr
    flow.write_text(
        """
name: composed
nodes:
  - {id: a, type: mcp, config: {server: unknown, tool: t}}
  - {id: b, type: flow, config: {flow: nowhere}}
  - {id: c, type: map, config: {items: [1], node: {type: flow, config: {flow: elsewhere}}}}
  - {id: d, type: flow, config: {flow: "{{ input.which }}"}}
  - {id: e, type: flow, config: {flow: composed}}
"""
    )
    result = flowdeck("flows", "import", str(flow), "--servers", str(servers), ok=False)
    assert (
        "nodes[0].config.server: no server named 'unknown' in the servers file (known: known)"
        in result.stderr
    )
    assert "nodes[1].config.flow: no live flow named 'nowhere', nor one in this import" in result.stderr
    assert "nodes[2].config.node.config.flow: no live flow named 'elsewhere'" in result.stderr
    assert "nodes[3]" not in result.stderr and "nodes[4]" not in result.stderr  # a template, itself
    without = flowdeck("flows", "import", str(flow), ok=False)
    assert (
        "nodes[0].config.server: server 'unknown': no servers file given (--servers FILE)" in without.stderr
    )


def test_the_api_refuses_a_flow_naming_an_unknown_server_or_flow(settings: Settings, tmp_path: Path) -> None:
    servers = write(tmp_path, "servers.json", '{"mcpServers": {"known": {"command": "true"}}}')
    with served(settings.model_copy(update={"mcp_servers": servers})) as base:
        body = {
            "name": "composed",
            "nodes": [
                {"id": "a", "type": "mcp", "config": {"server": "unknown", "tool": "t"}},
                {"id": "b", "type": "flow", "config": {"flow": "nowhere"}},
                {"id": "c", "type": "mcp", "config": {"server": "known", "tool": "t"}},
            ],
        }
        response = httpx.post(f"{base}/api/flows", json=body)
        assert response.status_code == 422
        assert response.json()["problems"] == [
            {
                "place": "nodes[0].config.server",
                "message": "no server named 'unknown' in the servers file (known: known)",
            },
            {
                "place": "nodes[1].config.flow",
                "message": "no live flow named 'nowhere', nor one in this import",
            },
        ]
        body["nodes"] = body["nodes"][2:]
        assert httpx.post(f"{base}/api/flows", json=body).status_code == 201
