"""Loading flow definitions from YAML or JSON, with every problem reported at once and located.

A place reads like ``nodes[1].config.url``; a problem of the file's syntax is placed by line and
column. Loading checks what the engine would refuse later (unknown node types, templates that don't
compile, configs the node type rejects), so a flow that loads is a flow that runs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from jinja2 import TemplateSyntaxError
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from flowdeck.engine import FlowDefinition, node_types
from flowdeck.engine.definition import InnerNode
from flowdeck.engine.prepare import INNER_KEY, MAP_TYPE
from flowdeck.engine.templates import Template, is_template
from flowdeck.errors import InvalidFlow, Problem

FLOW_SUFFIXES = (".yaml", ".yml", ".json")
_NAME_RULE = "must be 1 to 64 letters, digits, '_' or '-'"


def parse_flow(data: Any, source: str = "flow") -> FlowDefinition:
    """Validate already-parsed data as a flow definition, raising
    :class:`~flowdeck.errors.InvalidFlow` with all problems."""
    problems = list(_model_problems(data)) + list(_semantic_problems(data))
    unique = list(dict.fromkeys(problems))
    if unique:
        raise InvalidFlow(source, unique)
    return FlowDefinition.model_validate(data)


def load_flow_text(text: str, source: str = "flow", *, json_syntax: bool = False) -> FlowDefinition:
    """Parse YAML (or strict JSON) text and validate it."""
    try:
        data = json.loads(text) if json_syntax else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise InvalidFlow(source, [Problem(f"line {exc.lineno}, column {exc.colno}", exc.msg)]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        place = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        message = getattr(exc, "problem", None) or str(exc)
        raise InvalidFlow(source, [Problem(place, f"invalid YAML: {message}")]) from None
    return parse_flow(data, source)


def load_flow_file(path: Path) -> FlowDefinition:
    """Load one ``.yaml``, ``.yml`` or ``.json`` file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidFlow(str(path), [Problem("", f"cannot read the file: {exc}")]) from None
    return load_flow_text(text, str(path), json_syntax=path.suffix == ".json")


class Loaded(NamedTuple):
    source: str  # the file it came from
    definition: FlowDefinition


def load_flow_files(paths: Iterable[Path]) -> list[Loaded]:
    """Every flow of the files and folders named, or :class:`~flowdeck.errors.InvalidFlow` listing the
    problems of every file that has some: all load, or none."""
    loaded, errors = [], []
    for path in flow_files(paths):
        try:
            loaded.append(Loaded(str(path), load_flow_file(path)))
        except InvalidFlow as exc:
            errors.append(exc)
    _raise(errors)
    return loaded


def _raise(errors: list[InvalidFlow]) -> None:
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise InvalidFlow.of_files(errors)


def check_references(
    loaded: Iterable[Loaded], *, live_flows: Collection[str], servers: Collection[str] | None
) -> None:
    """Refuse flows whose ``flow`` nodes name a flow that is neither live nor among ``loaded``, or
    whose ``mcp`` nodes name a server not in the servers file (``servers`` None: none was given),
    each with its place. Names given by templates are known only when the flow runs."""
    flows = {*live_flows, *(item.definition.name for item in loaded)}
    errors = []
    for item in loaded:
        problems = list(_reference_problems(item.definition, flows, servers))
        if problems:
            errors.append(InvalidFlow(item.source, problems))
    _raise(errors)


def _reference_problems(
    definition: FlowDefinition, flows: Collection[str], servers: Collection[str] | None
) -> Iterator[Problem]:
    for index, spec in enumerate(definition.nodes):
        yield from _node_references(spec, f"nodes[{index}]", flows, servers)


def _node_references(
    spec: InnerNode, place: str, flows: Collection[str], servers: Collection[str] | None
) -> Iterator[Problem]:
    config = spec.config
    named = config.get(_NAMED.get(spec.type, ""))
    if isinstance(named, str) and not is_template(named):
        key = _NAMED[spec.type]
        if spec.type == "flow" and named not in flows:
            yield Problem(f"{place}.config.{key}", f"no live flow named {named!r}, nor one in this import")
        elif spec.type == "mcp" and servers is None:
            yield Problem(
                f"{place}.config.{key}", f"server {named!r}: no servers file given (--servers FILE)"
            )
        elif spec.type == "mcp" and named not in servers:  # type: ignore[operator]
            known = ", ".join(sorted(servers)) or "none"  # type: ignore[arg-type]
            yield Problem(
                f"{place}.config.{key}", f"no server named {named!r} in the servers file (known: {known})"
            )
    inner = config.get(INNER_KEY)
    if spec.type == MAP_TYPE and isinstance(inner, dict):
        yield from _node_references(
            InnerNode.model_validate(inner), f"{place}.config.{INNER_KEY}", flows, servers
        )


# the config field that names what a node reaches: a flow, an MCP server
_NAMED = {"flow": "flow", "mcp": "server"}


def flow_files(paths: Iterable[Path]) -> list[Path]:
    """The flow files named: each file as given, each folder's flow files in name order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if p.suffix in FLOW_SUFFIXES and p.is_file()))
        elif path.exists():
            found.append(path)
        else:
            raise InvalidFlow(str(path), [Problem("", "no such file or folder")])
    return found


def _place(loc: Iterable[Any]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _model_problems(data: Any) -> Iterator[Problem]:
    if not isinstance(data, dict):
        yield Problem("", f"a flow must be a mapping of fields, not {type(data).__name__}")
        return
    try:
        FlowDefinition.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            message = _NAME_RULE if error["type"] == "string_pattern_mismatch" else error["msg"]
            if error["type"] == "extra_forbidden":
                message = "unknown field"
            yield Problem(_place(error["loc"]), message)


def _semantic_problems(data: Any) -> Iterator[Problem]:
    if not isinstance(data, dict):
        return
    yield from _number_problems(data)
    yield from _schema_problems(data.get("input_schema"))
    if "output" in data:
        yield from _template_problems(data["output"], "output", whole=True)
    nodes = data.get("nodes")
    if not isinstance(nodes, list):
        return
    registry = node_types()
    seen: dict[str, int] = {}
    for index, node in enumerate(nodes):
        place = f"nodes[{index}]"
        if not isinstance(node, dict):
            continue
        node_id = node.get("id")
        if isinstance(node_id, str):
            if node_id in seen:
                yield Problem(
                    f"{place}.id", f"duplicate node id {node_id!r} (first at nodes[{seen[node_id]}])"
                )
            seen.setdefault(node_id, index)
        if "when" in node:
            yield from _template_problems(node["when"], f"{place}.when", whole=True)
        config = node.get("config", {})
        if isinstance(config, dict):
            yield from _template_problems(config, f"{place}.config")
        yield from _type_problems(node, place, registry)


def _type_problems(node: dict[str, Any], place: str, registry: dict[str, Any]) -> Iterator[Problem]:
    """A node's type is known and its config fits it; a map's node is checked the same way."""
    node_type, config = node.get("type"), node.get("config", {})
    if not isinstance(node_type, str):
        return
    if node_type not in registry:
        known = ", ".join(sorted(registry))
        yield Problem(f"{place}.type", f"unknown node type {node_type!r} (known: {known})")
        return
    if not isinstance(config, dict):
        return
    for sub, message in registry[node_type].check_config(config):
        yield Problem(f"{place}.config.{sub}" if sub else f"{place}.config", message)
    inner = config.get(INNER_KEY)
    if node_type == MAP_TYPE and isinstance(inner, dict):
        yield from _type_problems(inner, f"{place}.config.{INNER_KEY}", registry)


def _leaves(value: Any, place: str) -> Iterator[tuple[str, Any]]:
    """Every value inside ``value`` that is neither a mapping nor a list, with its place."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, f"{place}.{key}" if place else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, f"{place}[{index}]")
    else:
        yield place, value


def _number_problems(data: dict[str, Any]) -> Iterator[Problem]:
    """NaN and infinite numbers (YAML's ``.nan``, ``.inf``; ``NaN`` in lenient JSON): JSON has none,
    and a flow is stored and served as JSON, where they could only become null."""
    for place, leaf in _leaves(data, ""):
        if isinstance(leaf, float) and not math.isfinite(leaf):
            yield Problem(place, f"{leaf} is not a JSON number: write a finite number, or a string")


def _template_problems(value: Any, place: str, *, whole: bool = False) -> Iterator[Problem]:
    """Templates that don't compile; with ``whole``, a value that is not a template at all."""
    if whole and not (isinstance(value, str) and is_template(value)):
        yield Problem(place, 'must be a template, like "{{ input.x }}"')
        return
    for where, leaf in _leaves(value, place):
        if isinstance(leaf, str) and is_template(leaf):
            try:
                Template(leaf)
            except TemplateSyntaxError as exc:
                yield Problem(where, f"template does not compile: {exc.message} (line {exc.lineno})")


def _schema_problems(schema: Any) -> Iterator[Problem]:
    if schema is None:
        return
    if not isinstance(schema, dict):
        return  # the model check reports the wrong type
    if schema.get("type") != "object":
        yield Problem("input_schema.type", "the input schema must describe an object (type: object)")
    checker = Draft202012Validator(Draft202012Validator.META_SCHEMA)
    for error in checker.iter_errors(schema):
        yield Problem(
            _place(["input_schema", *error.absolute_path]), f"not a valid JSON Schema: {error.message}"
        )
