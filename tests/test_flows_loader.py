"""Loading flow files: every kind of problem is reported with its place, all at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowdeck.errors import InvalidFlow
from flowdeck.flowfiles import check_references, flow_files, load_flow_file, load_flow_files, load_flow_text
from flowdeck.remote import load_servers

GOOD = """
name: get_weather
title: Get weather
description: Weather for a city.
input_schema:
  type: object
  properties:
    city: {type: string}
    days: {type: integer, default: 1}
  required: [city]
timeout_s: 30
nodes:
  - id: lookup
    type: http
    config: {method: GET, url: "http://127.0.0.1:9000/weather?q={{ input.city }}"}
  - id: shape
    type: transform
    when: "{{ nodes.lookup.status == 200 }}"
    config:
      value: {city: "{{ input.city }}", temp: "{{ nodes.lookup.body.temp }}"}
output: "{{ nodes.shape }}"
"""


def problems(text: str) -> list[tuple[str, str]]:
    with pytest.raises(InvalidFlow) as caught:
        load_flow_text(text)
    return [(p.place, p.message) for p in caught.value.problems]


def test_a_good_flow_loads_with_its_fields() -> None:
    flow = load_flow_text(GOOD)
    assert flow.name == "get_weather"
    assert [node.id for node in flow.nodes] == ["lookup", "shape"]
    assert flow.nodes[1].when == "{{ nodes.lookup.status == 200 }}"
    assert flow.timeout_s == 30


def test_json_files_load_too(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    path.write_text(
        json.dumps({"name": "j", "nodes": [{"id": "a", "type": "transform", "config": {"value": 1}}]})
    )
    assert load_flow_file(path).name == "j"


def test_bad_yaml_is_placed_by_line_and_column() -> None:
    [(place, message)] = problems("name: x\nnodes: [\n  - {id: a\n")
    assert place.startswith("line ")
    assert "invalid YAML" in message


def test_bad_json_is_placed_by_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"name": "x",\n "nodes": [}')
    with pytest.raises(InvalidFlow) as caught:
        load_flow_file(path)
    assert caught.value.problems[0].place == "line 2, column 12"
    assert str(path) in str(caught.value)


def test_a_flow_that_is_not_a_mapping() -> None:
    assert problems("- just\n- a list\n") == [("", "a flow must be a mapping of fields, not list")]


def test_unknown_node_type_names_the_known_ones() -> None:
    [(place, message)] = problems(
        "name: x\nnodes:\n  - {id: a, type: transform}\n  - {id: b, type: teleport}\n"
    )
    assert place == "nodes[1].type"
    assert "unknown node type 'teleport'" in message
    assert "transform" in message and "http" in message


def test_duplicate_node_ids() -> None:
    text = "name: x\nnodes:\n  - {id: a, type: transform}\n  - {id: b, type: transform}\n  - {id: a, type: fail}\n"
    assert problems(text) == [("nodes[2].id", "duplicate node id 'a' (first at nodes[0])")]


@pytest.mark.parametrize("name", ["has space", "", "x" * 65, "dots.not.allowed"])
def test_flow_names_outside_the_pattern(name: str) -> None:
    [(place, message)] = problems(f"name: {json.dumps(name)}\nnodes: []\n")
    assert place == "name"
    assert "1 to 64 letters, digits" in message


def test_node_ids_outside_the_pattern() -> None:
    [(place, message)] = problems("name: x\nnodes:\n  - {id: 'a/b', type: transform}\n")
    assert place == "nodes[0].id"
    assert "1 to 64 letters, digits" in message


def test_input_schema_must_describe_an_object() -> None:
    [(place, message)] = problems("name: x\ninput_schema: {type: array}\nnodes: []\n")
    assert place == "input_schema.type"
    assert "object" in message


def test_input_schema_must_be_a_valid_json_schema() -> None:
    text = "name: x\ninput_schema: {type: object, properties: {n: {type: integr}}, required: 3}\nnodes: []\n"
    found = dict(problems(text))
    assert "input_schema.properties.n.type" in found
    assert "input_schema.required" in found
    assert all("not a valid JSON Schema" in message for message in found.values())


def test_templates_that_do_not_compile() -> None:
    text = "name: x\nnodes:\n  - id: a\n    type: transform\n    config: {value: {deep: ['ok', '{{ input.x +  }}']}}\n"
    [(place, message)] = problems(text)
    assert place == "nodes[0].config.value.deep[1]"
    assert message.startswith("template does not compile")


def test_when_must_be_a_template() -> None:
    [(place, message)] = problems("name: x\nnodes:\n  - {id: a, type: transform, when: 'yes'}\n")
    assert place == "nodes[0].when"
    assert "must be a template" in message


def test_output_must_be_a_template() -> None:
    [(place, message)] = problems("name: x\nnodes: []\noutput: nodes.a\n")
    assert (place, message) == ("output", 'must be a template, like "{{ input.x }}"')


def test_node_config_checked_by_its_type_but_templates_pass() -> None:
    text = (
        "name: x\nnodes:\n"
        "  - {id: a, type: delay, config: {seconds: -1}}\n"
        "  - {id: b, type: delay, config: {seconds: '{{ input.wait }}'}}\n"
        "  - {id: c, type: http, config: {method: GET}}\n"
        "  - {id: d, type: http, config: {url: 'http://x', retries: 3}}\n"
    )
    found = problems(text)
    assert ("nodes[0].config.seconds", "Input should be greater than or equal to 0") in found
    assert ("nodes[2].config.url", "Field required") in found
    assert any(place == "nodes[3].config.retries" for place, _ in found)
    assert not any(place.startswith("nodes[1]") for place, _ in found)


def test_unknown_top_level_fields_are_named() -> None:
    assert problems("name: x\nnodes: []\ntimeout: 3\n") == [("timeout", "unknown field")]


def test_three_problems_are_all_reported_at_once() -> None:
    text = """
name: bad name
nodes:
  - {id: a, type: transform, config: {value: "{{ oops( }}"}}
  - {id: a, type: nope}
"""
    found = problems(text)
    places = [place for place, _ in found]
    assert "name" in places
    assert "nodes[0].config.value" in places
    assert "nodes[1].id" in places
    assert "nodes[1].type" in places
    assert len(found) == 4


def test_numbers_json_has_not_are_refused_where_they_are(tmp_path: Path) -> None:
    text = """
name: odd_numbers
input_schema: {type: object, properties: {n: {type: number, default: .inf}}}
nodes:
  - {id: a, type: transform, config: {value: {x: .nan, list: [1, -.inf], ok: 1.5}}}
"""
    assert problems(text) == [
        ("input_schema.properties.n.default", "inf is not a JSON number: write a finite number, or a string"),
        ("nodes[0].config.value.x", "nan is not a JSON number: write a finite number, or a string"),
        ("nodes[0].config.value.list[1]", "-inf is not a JSON number: write a finite number, or a string"),
    ]
    path = tmp_path / "odd.json"  # Python's JSON reader takes NaN and Infinity as numbers
    path.write_text('{"name": "odd", "nodes": [{"id": "a", "type": "delay", "config": {"seconds": NaN}}]}')
    with pytest.raises(InvalidFlow) as caught:
        load_flow_file(path)
    assert "nodes[0].config.seconds: nan is not a JSON number" in str(caught.value)


def test_the_error_text_lists_every_problem_with_its_place(tmp_path: Path) -> None:
    path = tmp_path / "two.yaml"
    path.write_text("name: 'a b'\nnodes:\n  - {id: a, type: nope}\n")
    with pytest.raises(InvalidFlow) as caught:
        load_flow_file(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: 2 problems:")
    assert "  name: must be 1 to 64" in text
    assert "  nodes[0].type: unknown node type 'nope'" in text


def test_folders_give_their_flow_files_in_name_order(tmp_path: Path) -> None:
    for name in ["b.yaml", "a.json", "c.yml", "notes.txt"]:
        (tmp_path / name).write_text("{}")
    assert [p.name for p in flow_files([tmp_path])] == ["a.json", "b.yaml", "c.yml"]
    with pytest.raises(InvalidFlow, match="no such file"):
        flow_files([tmp_path / "missing.yaml"])


def test_every_example_flow_loads_and_names_what_exists() -> None:
    examples = Path(__file__).parent.parent / "examples"
    files = flow_files([examples / "flows", examples / "composed"])
    assert len(files) >= 8
    for path in files:
        load_flow_file(path)
    servers = load_servers(examples / "servers.json", {})
    assert set(servers) == {"everything", "helper"}
    loaded = load_flow_files([examples / "flows", examples / "composed"])
    check_references(loaded, live_flows=[], servers=list(servers))
    nodes = [node for item in loaded for node in item.definition.nodes]
    types = {node.type for node in nodes} | {
        node.config["node"]["type"] for node in nodes if node.type == "map"
    }
    assert {"mcp", "flow", "map"} <= types
