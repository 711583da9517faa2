"""``/api/flows/{id}/executions``, ``/api/executions``: pages of executions, newest first, and one
execution with its steps. The CLI reads through the same queries (`flowdeck.store.executions`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request

from flowdeck.api.models import Detail, Execution, ExecutionPage
from flowdeck.runtime import Runtime
from flowdeck.store.executions import ExecutionNotFound, get_execution, list_executions
from flowdeck.store.flows import FlowNotFound, get_flow

router = APIRouter(tags=["executions"])

StatusFilter = Annotated[
    Literal["pending", "fulfilled", "error", ""] | None, Query(description="Only this status; empty: all")
]
PageNumber = Annotated[int, Query(ge=1, le=1_000_000_000, description="From 1")]
PerPage = Annotated[int, Query(ge=1, le=100)]


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


@router.get(
    "/api/flows/{flow_id}/executions",
    response_model=ExecutionPage,
    responses={404: {"model": Detail}},
    summary="A flow's executions, newest first",
)
def flow_executions(
    request: Request, flow_id: str, page: PageNumber = 1, per_page: PerPage = 20, status: StatusFilter = None
) -> dict[str, Any]:
    """Works for a deleted flow's id too: its executions stay."""
    engine = _runtime(request).engine
    try:
        get_flow(engine, flow_id)
    except FlowNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    return list_executions(
        engine, flow_id=flow_id, status=status or None, page=page, per_page=per_page
    ).as_dict()


@router.get("/api/executions", response_model=ExecutionPage, summary="Executions of every flow, newest first")
def all_executions(
    request: Request,
    flow_id: Annotated[str | None, Query(description="Only this flow's (deleted ones too)")] = None,
    page: PageNumber = 1,
    per_page: PerPage = 20,
    status: StatusFilter = None,
) -> dict[str, Any]:
    engine = _runtime(request).engine
    return list_executions(
        engine, flow_id=flow_id or None, status=status or None, page=page, per_page=per_page
    ).as_dict()


@router.get(
    "/api/executions/{execution_id}",
    response_model=Execution,
    responses={404: {"model": Detail}},
    summary="One execution, with its steps",
)
def one_execution(
    request: Request,
    execution_id: str,
    data_after: Annotated[bool, Query(description="Add to each step the data as it stood after it")] = False,
) -> dict[str, Any]:
    try:
        record = get_execution(_runtime(request).engine, execution_id)
    except ExecutionNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    body = record.as_dict()
    if data_after:
        for step in body["steps"]:
            step["data_after"] = record.data_after(step["index"])
    return body
