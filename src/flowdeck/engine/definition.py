"""The flow definition: what a flow file holds, as a typed model.

It lives in the engine because the engine runs it; loading it from files, with every problem located,
is :mod:`flowdeck.flowfiles`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
# a remote tool's name as MCP allows it (dots too), within the 64 characters flowdeck keeps of a name
TOOL_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"


class RetryPolicy(BaseModel):
    """``attempts`` tries in all; the wait before try n+1 is ``backoff_s * 2**(n-1)``, at most
    ``max_backoff_s``. A node is tried again after its own error or timeout, never after a cancel."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempts: int = Field(default=1, ge=1)
    backoff_s: float = Field(default=0.0, ge=0)
    max_backoff_s: float | None = Field(default=None, ge=0)

    def wait_before(self, attempt: int) -> float:
        """Seconds to wait before try ``attempt`` (2, 3, ...)."""
        wait = self.backoff_s * 2 ** (attempt - 2)
        return wait if self.max_backoff_s is None else min(wait, self.max_backoff_s)


ONE_TRY = RetryPolicy()


class InnerNode(BaseModel):
    """A node without an id: a type, its config, and what any node takes (its own time limit, its
    retries, and whether an error stops the flow). A ``map``'s ``node`` is one."""

    model_config = ConfigDict(extra="forbid")

    type: str
    config: dict[str, Any] = Field(default_factory=dict)
    timeout_s: float | None = Field(default=None, gt=0)
    retry: RetryPolicy | None = None  # None: one try
    on_error: Literal["fail", "continue"] | None = None  # None: fail


class NodeSpec(InnerNode):
    """One step of a flow: an inner node with an id, and an optional ``when`` condition."""

    id: str = Field(pattern=NAME_PATTERN)
    when: str | None = None


class FlowDefinition(BaseModel):
    """A flow: its tool identity, its input schema and its nodes, run in order."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    title: str | None = None
    description: str = ""
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    timeout_s: float | None = Field(default=None, gt=0)
    nodes: list[NodeSpec] = Field(default_factory=list)
    output: str | None = None


class ExposedFlowDefinition(FlowDefinition):
    """A flow flowdeck makes to serve another server's tool under that tool's name: a name as MCP
    allows it, which a flow file's may not be."""

    name: str = Field(pattern=TOOL_NAME_PATTERN)
