"""A flow definition made ready to run many times: node types resolved, templates compiled once, and
the validator of its arguments built."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateSyntaxError
from jsonschema import Draft202012Validator, validators
from pydantic import ValidationError

from flowdeck.engine.definition import ONE_TRY, FlowDefinition, InnerNode, RetryPolicy
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


# a node type that runs another node for each item of a list: its config holds that node
MAP_TYPE, INNER_KEY = "map", "node"


@dataclass(slots=True)
class PreparedNode:
    spec_id: str
    type_name: str
    node_type: NodeType
    config: Any  # compiled config (templates inside)
    static_config: Any  # the validated config model when the config holds no template, else None
    when: Template | None
    timeout_s: float | None = None
    retry: RetryPolicy = ONE_TRY
    on_error_continue: bool = False
    inner: PreparedNode | None = None  # a map's node, run for each item

    @classmethod
    def of(cls, node_id: str, spec: InnerNode, when: str | None = None) -> PreparedNode:
        """Resolve the type and compile the templates; a map's inner node is prepared too (its
        templates see ``item`` and ``index``, so they are not rendered with the map's own)."""
        registry = node_types()
        if spec.type not in registry:
            raise NodeError(f"unknown node type {spec.type!r}")
        node_type = registry[spec.type]
        raw, inner = dict(spec.config), None
        if spec.type == MAP_TYPE:
            inner = cls.of(node_id, InnerNode.model_validate(raw.pop(INNER_KEY, None)))
        config = compile_value(raw)
        static = None if has_templates(config) else node_type.parse_config(config)
        return cls(
            spec_id=node_id,
            type_name=spec.type,
            node_type=node_type,
            config=config,
            static_config=static,
            when=Template(when) if when is not None else None,
            timeout_s=spec.timeout_s,
            retry=spec.retry or ONE_TRY,
            on_error_continue=spec.on_error == "continue",
            inner=inner,
        )


class PreparedFlow:
    """A definition made ready to run many times: node types resolved, templates compiled once."""

    def __init__(self, definition: FlowDefinition, *, flow_id: str = "", revision: int = 0) -> None:
        self.definition = definition
        self.flow_id = flow_id  # which stored flow this is: opaque to the engine, told to observers
        self.revision = revision
        self.name = definition.name
        self.timeout_s = definition.timeout_s
        self.nodes: list[PreparedNode] = []
        place = ""
        try:
            for index, spec in enumerate(definition.nodes):
                place = f"nodes[{index}]"
                self.nodes.append(PreparedNode.of(spec.id, spec, spec.when))
            place = "output"
            self.output = Template(definition.output) if definition.output is not None else None
        except (TemplateSyntaxError, NodeError, ValidationError) as exc:
            raise FlowNotRunnable(f"flow {definition.name!r}", [Problem(place, str(exc))]) from None
        self.validator = _InputValidator(definition.input_schema)
