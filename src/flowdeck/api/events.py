"""Server-Sent Events: ``/api/flows/{id}/events`` (an ``execution`` event with the summary whenever one
of the flow's executions starts, finishes a node or ends) and ``/api/executions/{id}/events`` (its
``step`` and ``execution`` events). Pushed as they happen; a comment every 15 s keeps idle
connections open through proxies; ``Last-Event-ID`` resumes, or a ``reload`` event says to refetch."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from flowdeck.api.models import Detail
from flowdeck.runtime import Runtime
from flowdeck.store.executions import ExecutionNotFound, ExecutionSummary, get_execution, iso
from flowdeck.store.flows import FlowNotFound, get_flow
from flowdeck.tracking.events import Delivered

router = APIRouter(tags=["events"])

KEEPALIVE_S = 15
SSE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "An event stream"},
    404: {"model": Detail},
}


def _payload(delivered: Delivered) -> dict[str, Any]:
    """An event's data as the API shows it elsewhere: a summary as ExecutionSummary, a step as a step."""
    if delivered.type == "execution":
        return ExecutionSummary(**delivered.data["data"]).as_dict()
    if delivered.type == "step":
        step = dict(delivered.data["data"])
        started, ended = step["started_at"], step["ended_at"]
        return {
            "execution_id": step["execution_id"],
            "index": step["idx"],
            "node_id": step["node_id"],
            "node_type": step["node_type"],
            "status": step["status"],
            "started_at": iso(started),
            "ended_at": iso(ended),
            "duration_ms": None if ended is None else round((ended - started) / 1000, 3),
            "output_truncated": step["output_truncated"],
            "error": step["error"],
        }
    return delivered.data


async def _stream(request: Request, watch: Any) -> AsyncIterator[ServerSentEvent]:
    async with watch as queue:
        yield ServerSentEvent(comment="watching")  # sent at once: the client knows it is connected
        while True:
            try:
                delivered: Delivered = await asyncio.wait_for(queue.get(), 1.0)
            except TimeoutError:
                if await request.is_disconnected():
                    return
                continue
            yield ServerSentEvent(data=json.dumps(_payload(delivered)), event=delivered.type, id=delivered.id)
            if delivered.type == "reload":
                return


def _response(request: Request, **watch: Any) -> EventSourceResponse:
    runtime: Runtime = request.app.state.runtime
    return EventSourceResponse(_stream(request, runtime.tracker.events.watch(**watch)), ping=KEEPALIVE_S)


@router.get("/api/flows/{flow_id}/events", responses=SSE_RESPONSE, summary="A flow's executions, live")
async def flow_events(
    request: Request, flow_id: str, last_event_id: Annotated[str | None, Header()] = None
) -> EventSourceResponse:
    try:
        get_flow(request.app.state.runtime.engine, flow_id)
    except FlowNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    return _response(request, flow_id=flow_id, last_event_id=last_event_id)


@router.get("/api/executions/{execution_id}/events", responses=SSE_RESPONSE, summary="One execution, live")
async def execution_events(
    request: Request, execution_id: str, last_event_id: Annotated[str | None, Header()] = None
) -> EventSourceResponse:
    try:
        get_execution(request.app.state.runtime.engine, execution_id)
    except ExecutionNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    return _response(request, execution_id=execution_id, last_event_id=last_event_id)
