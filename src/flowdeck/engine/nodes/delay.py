"""``delay``: waits ``seconds``, then outputs ``{"slept_s": seconds}``."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, ConfigDict, Field

from flowdeck.engine.nodes import NodeContext, NodeType


class DelayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(ge=0)


class Delay(NodeType):
    name = "delay"
    Config = DelayConfig

    async def run(self, config: DelayConfig, context: NodeContext) -> dict[str, float]:
        await asyncio.sleep(config.seconds)
        return {"slept_s": config.seconds}


node = Delay()
