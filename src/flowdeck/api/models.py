"""The API's JSON shapes of flows and errors, as pydantic models: they document `/openapi.json` and
check what is sent. Executions are :mod:`flowdeck.records`, used as they are."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ExposedFrom(BaseModel):
    server: str
    tool: str


class Flow(BaseModel):
    """A flow's definition, plus what flowdeck keeps about it."""

    model_config = ConfigDict(extra="allow")

    id: str
    name: str
    title: str | None = None
    description: str = ""
    input_schema: dict[str, Any]
    timeout_s: float | None = None
    nodes: list[dict[str, Any]]
    output: str | None = None
    revision: int = Field(description="Grows by one with each change")
    created_at: str
    updated_at: str
    deleted_at: str | None = Field(None, description="Set when the flow was deleted; its executions stay")
    exposed: bool = Field(
        False, description="Made by flowdeck to serve a tool of an exposed MCP server; read-only"
    )
    exposed_from: ExposedFrom | None = Field(None, description="The server and tool it serves, when exposed")


class FlowList(BaseModel):
    items: list[Flow]


class Problem(BaseModel):
    place: str = Field(description="Where, e.g. nodes[1].config.url")
    message: str


class FlowProblems(BaseModel):
    detail: str
    problems: list[Problem]


class Detail(BaseModel):
    detail: str


class Started(BaseModel):
    execution_id: str = Field(description="The new execution, recorded as pending")
