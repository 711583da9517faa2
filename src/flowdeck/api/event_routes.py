"""Server-Sent Events: ``/api/flows/{id}/events`` (an ``execution`` event with the summary whenever one
of the flow's executions starts, finishes a node or ends; a ``deleted`` event if the flow is deleted
meanwhile) and ``/api/executions/{id}/events`` (its ``step`` and ``execution`` events). Pushed as
they happen; a comment every 15 s keeps idle connections open through proxies; ``Last-Event-ID``
resumes, or a ``reload`` event says to refetch."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from flowdeck.api.models import Detail
from flowdeck.events import Delivered
from flowdeck.records import dump_json
from flowdeck.store.flows import get_flow
from flowdeck.store.reads import get_execution

router = APIRouter(tags=["events"])

KEEPALIVE_S = 15
RECONNECT_MS = 1500  # how soon a browser retries a dropped stream (its default is 3 s or more)
SSE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "An event stream"},
    404: {"model": Detail},
}


def _sse(delivered: Delivered) -> ServerSentEvent:
    """An event as the API shows it elsewhere: a summary as an ExecutionSummary, a step as a step."""
    if delivered.event is None:
        return ServerSentEvent(data=json.dumps({"reason": delivered.reason}), event="reload", id=delivered.id)
    event = delivered.event
    return ServerSentEvent(data=dump_json(event.record), event=event.kind, id=delivered.id)


async def _stream(
    request: Request, watch: AbstractAsyncContextManager[asyncio.Queue[Delivered]], flow_id: str | None = None
) -> AsyncIterator[ServerSentEvent]:
    catalog = request.app.state.runtime.catalog
    was_live = flow_id is not None and catalog.is_live(flow_id)
    async with watch as queue:
        # sent at once: the client knows it is connected, and to reconnect soon if the stream drops
        yield ServerSentEvent(comment="watching", retry=RECONNECT_MS)
        while True:
            try:
                delivered = await asyncio.wait_for(queue.get(), 1.0)
            except TimeoutError:
                if await request.is_disconnected():
                    return
                if was_live and not catalog.is_live(flow_id):  # deleted while watched: said once
                    was_live = False
                    yield ServerSentEvent(data=json.dumps({"flow_id": flow_id}), event="deleted")
                continue
            yield _sse(delivered)
            if delivered.event is None:
                return


def _response(request: Request, **watch: Any) -> EventSourceResponse:
    hub = request.app.state.runtime.hub
    stream = _stream(request, hub.watch(**watch), watch.get("flow_id"))
    return EventSourceResponse(stream, ping=KEEPALIVE_S)


@router.get("/api/flows/{flow_id}/events", responses=SSE_RESPONSE, summary="A flow's executions, live")
async def flow_events(
    request: Request, flow_id: str, last_event_id: Annotated[str | None, Header()] = None
) -> EventSourceResponse:
    get_flow(request.app.state.runtime.db, flow_id)
    return _response(request, flow_id=flow_id, last_event_id=last_event_id)


@router.get("/api/executions/{execution_id}/events", responses=SSE_RESPONSE, summary="One execution, live")
async def execution_events(
    request: Request, execution_id: str, last_event_id: Annotated[str | None, Header()] = None
) -> EventSourceResponse:
    get_execution(request.app.state.runtime.db, execution_id)
    return _response(request, execution_id=execution_id, last_event_id=last_event_id)
