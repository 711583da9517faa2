"""``/metrics``: the process's series in the Prometheus text format, behind the API's token."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
    summary="Prometheus metrics of this server process",
)
async def metrics(request: Request) -> Response:
    """Run on the event loop, beside the tracking it reads: a scrape takes microseconds."""
    return Response(request.app.state.runtime.tracker.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
