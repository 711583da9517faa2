"""The API's JSON shapes, as pydantic models: they document `/openapi.json` and check what is sent."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Status = Literal["pending", "fulfilled", "error"]
StepStatus = Literal["pending", "fulfilled", "error", "skipped"]
ErrorType = Literal["node_error", "invalid_params", "timeout", "cancelled", "interrupted", "internal"]


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


class ExecutionSummary(BaseModel):
    id: str
    flow_id: str
    flow_name: str
    status: Status
    started_at: str
    ended_at: str | None
    duration_ms: float | None
    params_preview: str = Field(description="The first argument as `name: value`, shortened")
    steps_done: int
    steps_total: int
    error_type: ErrorType | None = None
    error_node_id: str | None = None


class ExecutionPage(BaseModel):
    items: list[ExecutionSummary]
    page: int
    per_page: int
    total: int
    pages: int


class ExecutionError(BaseModel):
    type: ErrorType
    message: str
    node_id: str | None


class Client(BaseModel):
    name: str | None
    version: str | None


class Step(BaseModel):
    index: int
    node_id: str
    node_type: str
    status: StepStatus
    started_at: str
    ended_at: str | None
    duration_ms: float | None
    output: Any = None
    output_truncated: bool
    error: str | None
    data_after: dict[str, Any] | None = Field(
        None, description="`{input, nodes}` after this node; with `?data_after=true` only"
    )


class Execution(ExecutionSummary):
    flow_revision: int
    initial_params: Any
    params_truncated: bool
    data: dict[str, Any] = Field(
        description="`{input, nodes}`: the arguments with defaults, each node's output"
    )
    output: Any = None
    output_truncated: bool
    error: ExecutionError | None
    steps: list[Step]
    client: Client | None
    transport: Literal["http", "stdio", "cli"]
