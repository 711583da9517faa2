"""Page routes. Every state has its URL (`?page=N&execution=ID`); the script swaps in the same
fragments these routes render, so a page works before, and without, the script."""

from __future__ import annotations

import re
import shlex
from typing import Any

import yaml
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import Engine

from flowdeck.errors import ExecutionNotFound
from flowdeck.records import Execution
from flowdeck.states import Status
from flowdeck.store.flows import FlowRecord, get_flow, list_flows
from flowdeck.store.reads import get_execution, list_executions
from flowdeck.store.stats import flow_stats
from flowdeck.web.chart import chart
from flowdeck.web.rendering import templates

PER_PAGE = 20

router = APIRouter(include_in_schema=False)


def _db(request: Request) -> Engine:
    return request.app.state.runtime.db


def call_line(flow: FlowRecord) -> str:
    """A `flowdeck call` line that runs the flow, with a placeholder for each required argument."""
    schema = flow.definition.get("input_schema") or {}
    properties = schema.get("properties") or {}
    examples = {"integer": "1", "number": "1.5", "boolean": "true", "array": "[]", "object": "{}"}
    words = ["flowdeck", "call", flow.name]
    for name in schema.get("required") or []:
        example = examples.get((properties.get(name) or {}).get("type"), "…")
        key = name if re.fullmatch(r"[\w-]+", name) else shlex.quote(name)
        words.append(f"{key}={example}")
    return " ".join(words)


@router.get("/", response_class=HTMLResponse)
def index(request: Request) -> HTMLResponse:
    db = _db(request)
    rows = []
    for flow in list_flows(db, include_deleted=True):
        newest = list_executions(db, flow_id=flow.id, per_page=1)  # the last one, and the total
        rows.append({"flow": flow, "last": newest.items[0] if newest.items else None, "total": newest.total})
    live = [row for row in rows if not row["flow"].deleted]
    deleted = [row for row in rows if row["flow"].deleted]
    return templates.TemplateResponse(request, "index.html", {"live": live, "deleted": deleted})


def _flow_page(request: Request, flow: FlowRecord, tab: str, extra: dict[str, Any]) -> HTMLResponse:
    context = {"flow": flow, "tab": tab, "call_line": call_line(flow), **extra}
    return templates.TemplateResponse(request, f"flow_{tab}.html", context)


@router.get("/flows/{flow_id}", response_class=HTMLResponse)
def flow_definition(request: Request, flow_id: str) -> HTMLResponse:
    flow = get_flow(_db(request), flow_id)
    text = yaml.safe_dump(flow.definition, sort_keys=False, allow_unicode=True, width=100)
    return _flow_page(request, flow, "definition", {"yaml": text, "nodes": flow.definition.get("nodes", [])})


def _usage_main(db: Engine, flow: FlowRecord, page: int) -> dict[str, Any]:
    listing = list_executions(db, flow_id=flow.id, page=page, per_page=PER_PAGE)
    stats = flow_stats(db, flow.id)
    return {
        "flow": flow,
        "listing": listing,
        "stats": stats,
        "bars": chart(stats),
        "call_line": call_line(flow),
    }


def _detail(db: Engine, execution_id: str | None) -> Execution | None:
    if not execution_id:
        return None
    try:
        return get_execution(db, execution_id)
    except ExecutionNotFound:
        return None


@router.get("/flows/{flow_id}/usage", response_class=HTMLResponse)
def flow_usage(
    request: Request, flow_id: str, page: int = Query(1, ge=1), execution: str | None = None
) -> HTMLResponse:
    db = _db(request)
    flow = get_flow(db, flow_id)
    main = _usage_main(db, flow, page)
    return _flow_page(
        request, flow, "usage", {**main, "record": _detail(db, execution), "selected": execution}
    )


@router.get("/flows/{flow_id}/usage/main", response_class=HTMLResponse)
def flow_usage_main(
    request: Request, flow_id: str, page: int = Query(1, ge=1), execution: str | None = None
) -> HTMLResponse:
    """The stats, the list and its pages, for the script to swap in."""
    db = _db(request)
    context = {**_usage_main(db, get_flow(db, flow_id), page), "selected": execution}
    return templates.TemplateResponse(request, "_usage_main.html", context)


@router.get("/executions/{execution_id}/panel", response_class=HTMLResponse)
def execution_panel(request: Request, execution_id: str) -> HTMLResponse:
    """One execution's details, for the script to swap in."""
    record = get_execution(_db(request), execution_id)
    return templates.TemplateResponse(request, "_detail.html", {"record": record})


@router.get("/executions", response_class=HTMLResponse)
def all_executions(
    request: Request, flow: str | None = None, status: str | None = None, page: int = Query(1, ge=1)
) -> HTMLResponse:
    db = _db(request)
    chosen = Status(status) if status in Status.__members__.values() else None
    flows = list_flows(db, include_deleted=True)
    listing = list_executions(db, flow_id=flow or None, status=chosen, page=page, per_page=PER_PAGE)
    context = {"flows": flows, "listing": listing, "flow_filter": flow or "", "status_filter": chosen or ""}
    return templates.TemplateResponse(request, "executions.html", context)
