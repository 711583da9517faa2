"""A flow definition made ready to run many times: node types resolved, templates compiled once, and
the validator of its arguments built."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateSyntaxError
from jsonschema import Draft202012Validator, validators

from flowdeck.engine.definition import FlowDefinition
from flowdeck.engine.nodes import NodeError, NodeType, node_types
from flowdeck.engine.templates import Template, compile_value, has_templates
from flowdeck.errors import InvalidFlow, Problem


class FlowNotRunnable(InvalidFlow):
    """A definition that cannot be prepared: an unknown node type or a template that does not
    compile (a stored flow whose node type's package was uninstalled, say)."""


def _defaults_filling(validator_class: type) -> type:
    """A validator that also fills in ``default`` values of object properties (the jsonschema recipe)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):  # type: ignore[no-untyped-def]
        if isinstance(instance, dict):
            for prop, subschema in properties.items():
                if isinstance(subschema, dict) and "default" in subschema:
                    instance.setdefault(prop, subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": set_defaults})


_InputValidator = _defaults_filling(Draft202012Validator)


@dataclass(slots=True)
class PreparedNode:
    spec_id: str
    type_name: str
    node_type: NodeType
    config: Any  # compiled config (templates inside)
    static_config: Any  # the validated config model when the config holds no template, else None
    when: Template | None


class PreparedFlow:
    """A definition made ready to run many times: node types resolved, templates compiled once."""

    def __init__(self, definition: FlowDefinition, *, flow_id: str = "", revision: int = 0) -> None:
        self.definition = definition
        self.flow_id = flow_id  # which stored flow this is: opaque to the engine, told to observers
        self.revision = revision
        self.name = definition.name
        self.timeout_s = definition.timeout_s
        registry = node_types()
        self.nodes: list[PreparedNode] = []
        place = ""
        try:
            for index, spec in enumerate(definition.nodes):
                place = f"nodes[{index}]"
                if spec.type not in registry:
                    raise NodeError(f"unknown node type {spec.type!r}")
                node_type = registry[spec.type]
                config = compile_value(spec.config)
                static = None if has_templates(config) else node_type.parse_config(config)
                when = Template(spec.when) if spec.when is not None else None
                self.nodes.append(PreparedNode(spec.id, spec.type, node_type, config, static, when))
            place = "output"
            self.output = Template(definition.output) if definition.output is not None else None
        except (TemplateSyntaxError, NodeError) as exc:
            raise FlowNotRunnable(f"flow {definition.name!r}", [Problem(place, str(exc))]) from None
        self.validator = _InputValidator(definition.input_schema)
