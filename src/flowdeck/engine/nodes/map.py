"""``map``: runs its ``node`` once for each of its ``items``, ``concurrency`` at a time; the node's
templates also see ``item`` and ``index``. Output: the node's outputs, in item order.

Running the items is the engine's own work (:func:`flowdeck.engine.execute._run_map`), as retries
and time limits are: this type describes and checks the config.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from flowdeck.engine.definition import InnerNode
from flowdeck.engine.nodes import NodeType


class MapConfig(BaseModel):
    """As written in a flow; the engine takes ``node`` out before it renders the rest."""

    model_config = ConfigDict(extra="forbid")
    items: Any
    concurrency: int = Field(default=1, ge=1)
    node: InnerNode


class MapItems(BaseModel):
    """What a map renders: the list, and how many of its items may run at once."""

    model_config = ConfigDict(extra="forbid")
    items: Any
    concurrency: int = Field(default=1, ge=1)


class Map(NodeType):
    name = "map"
    Config = MapConfig

    def parse_config(self, rendered: dict[str, Any]) -> Any:
        return self._validate(MapItems, rendered)


node = Map()
