"""Page routes. Every state has its URL (`?page=N&execution=ID`); the script swaps in the same
fragments these routes render, so a page works before, and without, the script."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import yaml
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import Engine

from flowdeck.errors import ExecutionNotFound
from flowdeck.records import Execution, Remote
from flowdeck.states import Status
from flowdeck.store.flows import FlowRecord, definition_at, get_flow, list_flows
from flowdeck.store.reads import execution_exists, get_execution, list_executions
from flowdeck.store.stats import flow_stats
from flowdeck.web.chart import chart
from flowdeck.web.rendering import templates
from flowdeck.web.timeline import timeline

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


def _detail(request: Request, execution_id: str | None) -> dict[str, Any]:
    """What the detail panel shows of an execution: the record and its waterfall."""
    if not execution_id:
        return {"record": None}
    db = _db(request)
    try:
        record = get_execution(db, execution_id)
    except ExecutionNotFound:
        return {"record": None}
    definition = definition_at(db, record.flow_id, record.flow_revision)
    rows = timeline(record, None if definition is None else definition.get("nodes", []), _child_reader(db))
    links = {
        row.step.node_id: _remote_link(request, row.step.remote)
        for row in rows
        if row.step is not None and row.step.remote is not None
    }
    return {"record": record, "rows": rows, "remote_links": links}


def _child_reader(db: Engine) -> Callable[[str], Execution | None]:
    def read(execution_id: str) -> Execution | None:
        try:
            return get_execution(db, execution_id)
        except ExecutionNotFound:
            return None

    return read


def _remote_link(request: Request, remote: Remote) -> str | None:
    """The page of the execution a remote flowdeck recorded: here when it shares this database,
    else on the remote when it is reached over HTTP."""
    if remote.execution_id is None:
        return None
    if execution_exists(_db(request), remote.execution_id):
        return f"/executions/{remote.execution_id}"
    tools = request.app.state.runtime.remote
    url = tools.url_of(remote.server) if tools is not None else None
    if url is None:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/executions/{remote.execution_id}"


@router.get("/flows/{flow_id}/usage", response_class=HTMLResponse)
def flow_usage(
    request: Request, flow_id: str, page: int = Query(1, ge=1), execution: str | None = None
) -> HTMLResponse:
    db = _db(request)
    flow = get_flow(db, flow_id)
    main = {**_usage_main(db, flow, page), **_detail(request, execution), "selected": execution}
    return _flow_page(request, flow, "usage", main)


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
    get_execution(_db(request), execution_id)  # an unknown one is 404
    return templates.TemplateResponse(request, "_detail.html", _detail(request, execution_id))


@router.get("/executions/{execution_id}")
def execution_page(request: Request, execution_id: str) -> RedirectResponse:
    """An execution's own page: its flow's Usage tab, with it selected."""
    record = get_execution(_db(request), execution_id)
    return RedirectResponse(f"/flows/{record.flow_id}/usage?execution={execution_id}", status_code=303)


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
