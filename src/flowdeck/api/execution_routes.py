"""``/api/flows/{id}/executions``, ``/api/executions``: pages of executions, newest first, and one
execution with its steps. The CLI reads through the same queries (`flowdeck.store.reads`)."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Query, Request

from flowdeck.api.models import Detail
from flowdeck.records import Execution, ExecutionPage, one_of
from flowdeck.states import Status
from flowdeck.store.flows import get_flow
from flowdeck.store.reads import get_execution, list_executions

router = APIRouter(tags=["executions"])

StatusFilter = Annotated[one_of(Status, "") | None, Query(description="Only this status; empty: all")]
PageNumber = Annotated[int, Query(ge=1, le=1_000_000_000, description="From 1")]
PerPage = Annotated[int, Query(ge=1, le=100)]


@router.get(
    "/api/flows/{flow_id}/executions",
    response_model=ExecutionPage,
    responses={404: {"model": Detail}},
    summary="A flow's executions, newest first",
)
def flow_executions(
    request: Request, flow_id: str, page: PageNumber = 1, per_page: PerPage = 20, status: StatusFilter = None
) -> ExecutionPage:
    """Works for a deleted flow's id too: its executions stay."""
    db = request.app.state.runtime.db
    get_flow(db, flow_id)
    return list_executions(db, flow_id=flow_id, status=status or None, page=page, per_page=per_page)


@router.get("/api/executions", response_model=ExecutionPage, summary="Executions of every flow, newest first")
def all_executions(
    request: Request,
    flow_id: Annotated[str | None, Query(description="Only this flow's (deleted ones too)")] = None,
    page: PageNumber = 1,
    per_page: PerPage = 20,
    status: StatusFilter = None,
) -> ExecutionPage:
    db = request.app.state.runtime.db
    return list_executions(db, flow_id=flow_id or None, status=status or None, page=page, per_page=per_page)


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
) -> Execution:
    record = get_execution(request.app.state.runtime.db, execution_id)
    if data_after:
        record.steps = [replace(step, data_after=record.data_after(step.index)) for step in record.steps]
    return record
