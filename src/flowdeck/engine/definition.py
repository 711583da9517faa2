"""The flow definition: what a flow file holds, as a typed model.

It lives in the engine because the engine runs it; loading it from files, with every problem located,
is :mod:`flowdeck.flowfiles`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class NodeSpec(BaseModel):
    """One step of a flow: a node type, its config, and an optional ``when`` condition."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=NAME_PATTERN)
    type: str
    when: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)


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
