"""``/api/flows/{id}/executions``, ``/api/executions``: pages of executions, newest first, filtered;
one execution with its steps; a flow's insights. The CLI reads through the same queries
(`flowdeck.store.reads`, `flowdeck.store.stats`)."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from flowdeck.api.models import Detail, Started
from flowdeck.records import Execution, ExecutionPage, Insights, one_of
from flowdeck.states import Status
from flowdeck.store.export import MEDIA_TYPES, Format, export_executions
from flowdeck.store.flows import get_flow
from flowdeck.store.reads import Filter, get_execution, list_executions
from flowdeck.store.stats import flow_insights

router = APIRouter(tags=["executions"])

StatusFilter = Annotated[one_of(Status, "") | None, Query(description="Only this status; empty: all")]
PageNumber = Annotated[int, Query(ge=1, le=1_000_000_000, description="From 1")]
PerPage = Annotated[int, Query(ge=1, le=100)]
Since = Annotated[str | None, Query(description="Started at or after (ISO 8601)")]
Until = Annotated[str | None, Query(description="Started at or before (ISO 8601)")]
FILTERS = (
    "Also `param.<key>=<value>` (any number): the executions whose top-level argument `<key>`, as"
    " sent, equals `<value>` (a string as it is, anything else as its JSON text); and `error_node_id`,"
    " `error_type` and `error` (a message's shape, as the insights' grouped errors give it)."
)


def _filter(request: Request, flow_id: str | None) -> Filter:
    return Filter.from_query(request.query_params, flow_id=flow_id)


@router.get(
    "/api/flows/{flow_id}/executions",
    response_model=ExecutionPage,
    responses={404: {"model": Detail}, 422: {"model": Detail}},
    summary="A flow's executions, newest first",
    description="Works for a deleted flow's id too: its executions stay. " + FILTERS,
)
def flow_executions(
    request: Request,
    flow_id: str,
    page: PageNumber = 1,
    per_page: PerPage = 20,
    status: StatusFilter = None,
    since: Since = None,
    until: Until = None,
) -> ExecutionPage:
    db = request.app.state.runtime.db
    get_flow(db, flow_id)
    return list_executions(db, _filter(request, flow_id), page=page, per_page=per_page)


@router.get(
    "/api/executions",
    response_model=ExecutionPage,
    responses={422: {"model": Detail}},
    summary="Executions of every flow, newest first",
    description=FILTERS,
)
def all_executions(
    request: Request,
    flow_id: Annotated[str | None, Query(description="Only this flow's (deleted ones too)")] = None,
    page: PageNumber = 1,
    per_page: PerPage = 20,
    status: StatusFilter = None,
    since: Since = None,
    until: Until = None,
) -> ExecutionPage:
    db = request.app.state.runtime.db
    return list_executions(db, _filter(request, flow_id or None), page=page, per_page=per_page)


@router.get(
    "/api/flows/{flow_id}/insights",
    response_model=Insights,
    responses={404: {"model": Detail}, 422: {"model": Detail}},
    summary="Per node, and errors grouped, over a flow's latest executions",
    description="The latest 1,000 executions; with `since` or `until`, the latest 10,000 of that range.",
)
def insights(request: Request, flow_id: str, since: Since = None, until: Until = None) -> Insights:
    db = request.app.state.runtime.db
    get_flow(db, flow_id)
    window = _filter(request, flow_id)
    return flow_insights(db, flow_id, since=window.since, until=window.until)


@router.get(
    "/api/executions/export",
    response_class=StreamingResponse,
    responses={
        200: {"content": {MEDIA_TYPES[Format.NDJSON]: {}, MEDIA_TYPES[Format.CSV]: {}}},
        422: {"model": Detail},
    },
    summary="Every execution the filters match, newest first, streamed",
    description="NDJSON (the default): one whole Execution per line. CSV: one ExecutionSummary per row,"
    " with a header. " + FILTERS,
)
def export(
    request: Request,
    flow_id: Annotated[str | None, Query(description="Only this flow's (deleted ones too)")] = None,
    status: StatusFilter = None,
    since: Since = None,
    until: Until = None,
    form: Annotated[Format, Query(alias="format")] = Format.NDJSON,
) -> StreamingResponse:
    where = _filter(request, flow_id or None)  # a bad filter is a 422 before anything is sent
    lines = export_executions(request.app.state.runtime.db, where, form)
    headers = {"Content-Disposition": f'attachment; filename="executions.{form}"'}
    return StreamingResponse(lines, media_type=MEDIA_TYPES[form], headers=headers)


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


@router.post(
    "/api/executions/{execution_id}/rerun",
    status_code=202,
    response_model=Started,
    responses={404: {"model": Detail}, 409: {"model": Detail}, 503: {"model": Detail}},
    summary="Run an execution again: its flow as it is now, the same arguments",
    description="Recorded with `transport: rerun` and `rerun_of`; answered once the new execution is"
    " recorded as pending, while it runs. 409 when the flow is deleted or the arguments were stored"
    " redacted.",
)
async def rerun(request: Request, execution_id: str) -> Started:
    tracker = request.app.state.runtime.tracker
    return Started(execution_id=await tracker.start_rerun(execution_id))
