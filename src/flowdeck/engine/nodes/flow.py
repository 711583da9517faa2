"""``flow``: runs another live flow as a child execution of this one, and outputs its output."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from flowdeck.engine.definition import NAME_PATTERN
from flowdeck.engine.nodes import NodeContext, NodeError, NodeType
from flowdeck.engine.ports import MAX_FLOW_DEPTH, Parent
from flowdeck.ids import new_id


class FlowConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    flow: str = Field(pattern=NAME_PATTERN)
    arguments: dict[str, Any] = Field(default_factory=dict)


class Flow(NodeType):
    name = "flow"
    Config = FlowConfig

    async def run(self, config: FlowConfig, context: NodeContext) -> Any:
        children = context.services.flows
        if children is None:
            raise NodeError("flow nodes can't run here: no flows to run them with")
        if context.depth >= MAX_FLOW_DEPTH:
            raise NodeError(
                f"flows nest at most {MAX_FLOW_DEPTH} deep: {config.flow!r} would be flow number"
                f" {context.depth + 1} of this chain"
            )
        flow = children.find(config.flow)
        if flow is None:
            raise NodeError(f"no live flow named {config.flow!r}")
        execution_id = new_id()
        context.note_child(execution_id)
        child = await children.run(
            flow,
            config.arguments,
            execution_id=execution_id,
            parent=Parent(context.execution_id, context.node_id),
            depth=context.depth + 1,
            deadline=context.deadline,
        )
        if child.error is not None:
            where = f" at node '{child.error.node_id}'" if child.error.node_id else ""
            raise NodeError(f"{config.flow} failed{where}: {child.error.message}")
        return child.output


node = Flow()
