"""Node types: the base class a node type derives from, and the registry read from entry points.

A node type is an object exposed in the entry point group ``flowdeck.nodes``; the built-in ones are
registered there too, so a plugin package adds a type exactly as flowdeck adds its own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ValidationError

from flowdeck.engine.ports import NO_SERVICES, Services, ToolReply
from flowdeck.engine.templates import Template, is_template

ENTRY_POINT_GROUP = "flowdeck.nodes"


class NodeError(Exception):
    """A node failed; the message is shown to the caller as the reason."""


class Notes(Protocol):
    """What a node run is recorded on (its step, or a map's item): what it started elsewhere."""

    child_execution_id: str | None
    remote: dict[str, Any] | None
    reply: ToolReply | None


@dataclass(frozen=True, slots=True)
class NodeContext:
    """What a running node may know about where it runs, and the ways it may reach out: the run's
    services (child flows, MCP tools), how deep it is among nested flows, when the execution must
    end (a ``time.monotonic()`` instant), and where to note what it starts and how far it got."""

    execution_id: str
    flow_name: str
    node_id: str
    services: Services = NO_SERVICES
    depth: int = 1
    deadline: float | None = None
    notes: Notes | None = None
    report: Callable[[str | None], None] | None = None  # None: nothing to say, but the notes changed

    def note_child(self, execution_id: str) -> None:
        """The child execution this node started (recorded with the node, and linked)."""
        if self.notes is not None:
            self.notes.child_execution_id = execution_id
            self._report(None)

    def note_remote(self, server: str, tool: str, execution_id: str | None = None) -> None:
        """The tool this node called, and the execution the remote flowdeck recorded, when it did."""
        if self.notes is not None:
            self.notes.remote = {"server": server, "tool": tool, "execution_id": execution_id}
            self._report(None)

    def note_reply(self, reply: ToolReply) -> None:
        """The called tool's reply as it came, for whoever serves this flow as that tool."""
        if self.notes is not None:
            self.notes.reply = reply

    def progress(self, message: str) -> None:
        """Tell the caller how far the node got (``"<node id> [k/n]"``)."""
        self._report(message)

    def _report(self, message: str | None) -> None:
        if self.report is not None:
            self.report(message)


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
        return self._validate(self.Config, rendered)

    @staticmethod
    def _validate(model: type[BaseModel], rendered: dict[str, Any]) -> Any:
        try:
            return model.model_validate(rendered)
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
