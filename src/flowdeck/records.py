"""An execution as everyone reads it: one set of typed records for the store's reads, the recorder's
live events, the event hub, the API's responses (FastAPI takes them as its response models), the
pages and the CLI.

They are plain dataclasses, cheap to make on the tracking path; pydantic reads their annotations to
validate, to serialize and to describe them in ``/openapi.json``. Times are kept as stored (integer
microseconds) and become ISO 8601 only in JSON. A record's docstring would become its schema's
description, so these carry comments instead.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field, GetPydanticSchema, PlainSerializer, TypeAdapter
from pydantic_core import core_schema

from flowdeck.states import ErrorType, Status, StepStatus, Transport
from flowdeck.times import iso

# a stored time; ISO 8601 in JSON
Micros = Annotated[int, PlainSerializer(iso, return_type=str, when_used="json")]


def one_of(kind: type[enum.StrEnum], *extra: str) -> Any:
    """A member of ``kind`` (or one of the ``extra`` texts), accepted and described as its plain text
    (an inline ``enum`` of strings in the schema); text read from JSON or a row becomes the member."""
    texts = [*(member.value for member in kind), *extra]
    members = kind._value2member_map_

    def member(value: Any) -> Any:
        return members.get(value, value)

    schema = core_schema.no_info_after_validator_function(member, core_schema.literal_schema(texts))
    return Annotated[Any, GetPydanticSchema(lambda _type, _handler: schema)]


StatusChoice = one_of(Status)
StepStatusChoice = one_of(StepStatus)
ErrorTypeChoice = one_of(ErrorType)
TransportChoice = one_of(Transport)


# what a list shows of an execution, and what a flow's live stream sends each time one changes
@dataclass(slots=True, kw_only=True)
class ExecutionSummary:
    id: str
    flow_id: str
    flow_name: str
    status: StatusChoice
    started_at: Micros
    ended_at: Micros | None
    duration_ms: float | None
    params_preview: Annotated[str, Field(description="The first argument as `name: value`, shortened")]
    steps_done: int
    steps_total: int
    error_type: ErrorTypeChoice | None = None
    error_node_id: str | None = None
    parent_execution_id: str | None
    rerun_of: str | None


# a field sent only when it applies (a step's tries, items, child, remote call)
ONLY_IF_SET = Field(exclude_if=lambda value: value is None)


# one try of a node that was tried more than once
@dataclass(slots=True, kw_only=True)
class Attempt:
    started_at: Micros
    ended_at: Micros | None
    status: StepStatusChoice
    error: str | None


# one item of a map node
@dataclass(slots=True, kw_only=True)
class Item:
    index: int
    status: StepStatusChoice
    started_at: Micros | None
    ended_at: Micros | None
    duration_ms: float | None
    error: str | None
    child_execution_id: str | None


# the tool an mcp node called, and the execution the remote recorded when it is a flowdeck
@dataclass(slots=True, kw_only=True)
class Remote:
    server: str
    tool: str
    execution_id: str | None


# a step as far as its live event tells it: all but its output, which is read, not pushed
@dataclass(slots=True, kw_only=True)
class StepState:
    index: int
    node_id: str
    node_type: str
    status: StepStatusChoice
    started_at: Micros
    ended_at: Micros | None
    duration_ms: float | None
    output_truncated: bool
    error: str | None


# one node's run within an execution
@dataclass(slots=True, kw_only=True)
class Step(StepState):
    output: Any = None
    data_after: Annotated[
        dict[str, Any] | None,
        Field(description="`{input, nodes}` after this node; with `?data_after=true` only"),
    ] = None
    attempts: Annotated[list[Attempt] | None, ONLY_IF_SET] = None
    child_execution_id: Annotated[str | None, ONLY_IF_SET] = None
    items: Annotated[list[Item] | None, ONLY_IF_SET] = None
    remote: Annotated[Remote | None, ONLY_IF_SET] = None


# the live event of a step starting or ending
@dataclass(slots=True, kw_only=True)
class StepChange(StepState):
    execution_id: str


@dataclass(slots=True, kw_only=True)
class ExecutionError:
    type: ErrorTypeChoice
    message: str
    node_id: str | None


@dataclass(slots=True, kw_only=True)
class Client:
    name: str | None
    version: str | None


@dataclass(slots=True, kw_only=True)
class ParentRef:
    execution_id: str
    node_id: str


# one execution, whole
@dataclass(slots=True, kw_only=True)
class Execution(ExecutionSummary):
    flow_revision: int
    initial_params: Any
    params_truncated: bool
    data: Annotated[
        dict[str, Any], Field(description="`{input, nodes}`: the arguments with defaults, each node's output")
    ]
    output: Any = None
    output_truncated: bool
    error: ExecutionError | None
    steps: list[Step]
    client: Client | None
    transport: TransportChoice
    parent: ParentRef | None
    trace_id: str | None
    children: list[ExecutionSummary]

    def data_after(self, index: int) -> dict[str, Any]:
        """``{"input", "nodes"}`` as it stood after node ``index`` (-1: before any node)."""
        return data_after(self.data["input"], self.steps, index)


# how one node of a flow fared over a window of its executions
@dataclass(slots=True, kw_only=True)
class NodeInsight:
    node_id: str
    node_type: str
    runs: int
    errors: int
    error_rate: float
    p50_ms: float | None
    p95_ms: float | None


# errors of one shape: the same node, type and message but for its numbers, ids and quoted values
@dataclass(slots=True, kw_only=True)
class ErrorGroup:
    node_id: str | None
    type: ErrorTypeChoice
    message: str
    count: int
    first_seen: Micros
    last_seen: Micros
    example_execution_id: str


# a flow's insights: per node, and its errors grouped, over the executions looked at
@dataclass(slots=True, kw_only=True)
class Insights:
    executions: int
    nodes: list[NodeInsight]
    errors: list[ErrorGroup]


# a page of executions, newest first
@dataclass(slots=True, kw_only=True)
class ExecutionPage:
    items: list[ExecutionSummary]
    page: int
    per_page: int
    total: int
    pages: int


def data_after(arguments: Any, steps: list[Step], index: int) -> dict[str, Any]:
    """The data after node ``index``: the arguments, and the outputs of the nodes run so far (a node
    that failed but let the flow go on has its error as its output). Each step stores only its own
    output, so this is rebuilt rather than stored."""
    nodes = {
        step.node_id: step.output
        for step in steps
        if step.index <= index
        and (
            step.status == StepStatus.FULFILLED
            or (step.status == StepStatus.ERROR and step.output is not None)
        )
    }
    return {"input": arguments, "nodes": nodes}


@functools.cache
def _adapter(kind: type) -> TypeAdapter[Any]:
    return TypeAdapter(kind)


def dump_json(record: Any, *, indent: int | None = None) -> str:
    """A record as the API sends it: JSON, times in ISO 8601."""
    return _adapter(type(record)).dump_json(record, indent=indent).decode()


def to_json(record: Any) -> Any:
    """A record as the API sends it, as plain data (what :func:`dump_json` writes)."""
    return _adapter(type(record)).dump_python(record, mode="json")
