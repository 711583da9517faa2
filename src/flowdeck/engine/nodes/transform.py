"""``transform``: its output is its ``value``, with the templates inside rendered."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from flowdeck.engine.nodes import NodeContext, NodeType


class TransformConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: Any = None


class Transform(NodeType):
    name = "transform"
    Config = TransformConfig

    async def run(self, config: TransformConfig, context: NodeContext) -> Any:
        return config.value


node = Transform()
