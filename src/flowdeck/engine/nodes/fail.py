"""``fail``: always fails, with its rendered ``message``."""

from __future__ import annotations

import json
from typing import Any, NoReturn

from pydantic import BaseModel, ConfigDict

from flowdeck.engine.nodes import NodeContext, NodeError, NodeType


class FailConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: Any = "failed"


class Fail(NodeType):
    name = "fail"
    Config = FailConfig

    async def run(self, config: FailConfig, context: NodeContext) -> NoReturn:
        message = config.message
        raise NodeError(message if isinstance(message, str) else json.dumps(message))


node = Fail()
