"""What composing nodes need from outside the engine, as small protocols: running another flow as a
child execution, and calling a tool of another MCP server. They are implemented above (by the
tracker and the catalog, by the pool of MCP client sessions) and handed to a run as its
:class:`Services`; the engine imports neither."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from flowdeck.engine.execute import Run
    from flowdeck.engine.prepare import PreparedFlow

# how many flows may nest, the top flow being the first
MAX_FLOW_DEPTH = 8


@dataclass(frozen=True, slots=True)
class Parent:
    """Where a child execution was started: its parent execution and the node that started it."""

    execution_id: str
    node_id: str


class ChildFlows(Protocol):
    def find(self, name: str) -> PreparedFlow | None:
        """The live flow of that name, ready to run."""

    async def run(
        self,
        flow: PreparedFlow,
        arguments: Any,
        *,
        execution_id: str,
        parent: Parent,
        depth: int,
        deadline: float | None,
    ) -> Run:
        """Run ``flow`` as a recorded child execution; its cancellation is the caller's."""


@dataclass(slots=True)
class ToolReply:
    """A tool's result, as plain data: ``content`` items as JSON objects."""

    content: list[dict[str, Any]]
    structured: Any = None
    is_error: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


ProgressFn = Callable[[float, float | None, str | None], None]


class Tools(Protocol):
    def knows(self, server: str) -> bool:
        """Whether ``server`` is one the process was given."""

    async def call(
        self, server: str, tool: str, arguments: dict[str, Any], *, on_progress: ProgressFn
    ) -> ToolReply:
        """Call ``tool`` on ``server``; cancelling the call cancels it on the server too."""


@dataclass(frozen=True, slots=True)
class Services:
    """The ports a run may use; a missing one makes the nodes that need it fail with a reason."""

    flows: ChildFlows | None = None
    tools: Tools | None = None


NO_SERVICES = Services()
