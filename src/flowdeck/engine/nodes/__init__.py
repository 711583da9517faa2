"""Node types: the base class a node type derives from, and the registry read from entry points.

A node type is an object exposed in the entry point group ``flowdeck.nodes``; the built-in ones are
registered there too, so a plugin package adds a type exactly as flowdeck adds its own.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError

from flowdeck.engine.templates import Template, is_template

ENTRY_POINT_GROUP = "flowdeck.nodes"


class NodeError(Exception):
    """A node failed; the message is shown to the caller as the reason."""


@dataclass(frozen=True, slots=True)
class NodeContext:
    """What a running node may know about where it runs."""

    execution_id: str
    flow_name: str
    node_id: str


class NodeType:
    """Base of every node type: a pydantic model for its config and an async ``run``.

    The runner renders the config's templates, validates the result with ``Config`` and passes the
    model to ``run``; what ``run`` returns (JSON data) is the node's output.
    """

    name: ClassVar[str]
    Config: ClassVar[type[BaseModel]]

    async def run(self, config: Any, context: NodeContext) -> Any:
        raise NotImplementedError

    def check_config(self, raw: dict[str, Any]) -> list[tuple[str, str]]:
        """Problems of a config as written, as (place, message); values that are templates pass."""
        try:
            self.Config.model_validate(raw)
        except ValidationError as exc:
            return [
                (".".join(str(part) for part in error["loc"]), error["msg"])
                for error in exc.errors(include_url=False)
                if not (isinstance(error.get("input"), str) and is_template(error["input"]))
            ]
        return []

    def parse_config(self, rendered: dict[str, Any]) -> Any:
        """The rendered config as the node's model; a bad value is the node's error."""
        try:
            return self.Config.model_validate(rendered)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}"
                for e in exc.errors(include_url=False)
            )
            raise NodeError(f"invalid config: {problems}") from None


@functools.cache
def node_types() -> dict[str, NodeType]:
    """Every installed node type by name, read once from the entry points."""
    found: dict[str, NodeType] = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        node = point.load()
        found[point.name] = node() if isinstance(node, type) else node
    return found


__all__ = ["ENTRY_POINT_GROUP", "NodeContext", "NodeError", "NodeType", "Template", "node_types"]
