"""``/api/flows``: create, read, update and delete flows. A body is checked exactly as a flow file
is, and every problem comes back with its place (the app's handler for
:class:`~flowdeck.errors.InvalidFlow`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine

from flowdeck.api.models import Detail, Flow, FlowList, FlowProblems
from flowdeck.exposure import check_deletable
from flowdeck.flowfiles import Loaded, check_references, parse_flow
from flowdeck.runtime import Runtime
from flowdeck.store import flows as store
from flowdeck.times import iso

router = APIRouter(prefix="/api/flows", tags=["flows"])

DEFINITION_EXAMPLE = {
    "name": "hello",
    "description": "Greets someone.",
    "input_schema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
    "nodes": [{"id": "greet", "type": "transform", "config": {"value": "Hello, {{ input.name }}!"}}],
}


DefinitionBody = Annotated[
    Any, Body(description="A flow definition, as in a flow file", examples=[DEFINITION_EXAMPLE])
]


def flow_json(record: store.FlowRecord) -> dict[str, Any]:
    return {
        **record.definition,
        "id": record.id,
        "revision": record.revision,
        "created_at": iso(record.created_at),
        "updated_at": iso(record.updated_at),
        "deleted_at": iso(record.deleted_at),
        "exposed": record.exposed is not None,
        **(
            {}
            if record.exposed is None
            else {"exposed_from": {"server": record.exposed_server, "tool": record.exposed["tool"]["name"]}}
        ),
    }


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


async def _save(
    request: Request, definition: Any, write: Callable[[Engine, dict[str, Any]], store.FlowRecord]
) -> dict[str, Any]:
    """Check a definition as a flow file is checked, write it, and refresh the tool list now rather
    than at the next look."""
    checked = parse_flow(definition, "request body")
    runtime = _runtime(request)
    runtime.catalog.refresh()
    check_references(
        [Loaded("request body", checked)], live_flows=runtime.catalog.names(), servers=runtime.server_names
    )
    values = checked.model_dump(mode="json", exclude_none=True)
    record = await run_in_threadpool(write, runtime.db, values)
    runtime.catalog.refresh()
    return flow_json(record)


@router.get("", response_model=FlowList, summary="The live flows")
def list_flows(request: Request) -> dict[str, Any]:
    return {"items": [flow_json(record) for record in store.list_flows(_runtime(request).db)]}


@router.post(
    "",
    status_code=201,
    response_model=Flow,
    responses={409: {"model": Detail}, 422: {"model": FlowProblems}},
    summary="Create a flow",
)
async def create_flow(request: Request, definition: DefinitionBody) -> Any:
    return await _save(request, definition, store.create_flow)


@router.get("/{flow_id}", response_model=Flow, responses={404: {"model": Detail}}, summary="One flow")
def get_flow(request: Request, flow_id: str) -> dict[str, Any]:
    """A deleted flow is still found by its id, with `deleted_at` set."""
    return flow_json(store.get_flow(_runtime(request).db, flow_id))


@router.put(
    "/{flow_id}",
    response_model=Flow,
    responses={404: {"model": Detail}, 409: {"model": Detail}, 422: {"model": FlowProblems}},
    summary="Replace a flow's definition",
)
async def update_flow(request: Request, flow_id: str, definition: DefinitionBody) -> Any:
    """The revision grows by one. A flow may be renamed; a deleted flow can't be changed, nor can a
    flow made to serve an exposed server's tool (409)."""
    return await _save(request, definition, lambda db, values: store.update_flow(db, flow_id, values))


@router.delete(
    "/{flow_id}",
    status_code=204,
    responses={404: {"model": Detail}, 409: {"model": Detail}},
    summary="Delete a flow",
)
async def delete_flow(request: Request, flow_id: str) -> Response:
    """The flow stops being a tool; its executions stay, with its id and name. A flow serving the
    tool of a server this server exposes is refused (409): it would be made again."""
    runtime = _runtime(request)
    check_deletable(await run_in_threadpool(store.get_flow, runtime.db, flow_id), runtime.catalog.exposing)
    await run_in_threadpool(store.delete_flow, runtime.db, flow_id)
    runtime.catalog.refresh()
    return Response(status_code=204)
