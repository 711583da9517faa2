"""Page routes. Every state has its URL (`?status=error&param.city=Paris&page=N&execution=ID`); the
script swaps in the same fragments these routes render, so a page works before, and without, the
script. What a person asks for that can't be shown (`?page=abc`, a status that does not exist) is a
page that says why, never raw JSON."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import yaml
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Engine

from flowdeck.errors import ExecutionNotFound, InvalidQuery
from flowdeck.records import Execution, Remote
from flowdeck.store.flows import FlowRecord, definition_at, get_flow, list_flows
from flowdeck.store.reads import PARAM_PREFIX, Filter, execution_exists, get_execution, list_executions
from flowdeck.store.stats import flow_insights, flow_stats
from flowdeck.web.chart import chart
from flowdeck.web.rendering import templates
from flowdeck.web.timeline import timeline

PER_PAGE = 20

router = APIRouter(include_in_schema=False)


def _db(request: Request) -> Engine:
    return request.app.state.runtime.db


# an example value of each JSON Schema type, when a property's schema gives none of its own
_EXAMPLES = {"integer": 1, "number": 1.5, "boolean": True, "array": [], "object": {}, "string": "text"}


def call_line(flow: FlowRecord, mcp_url: str) -> str:
    """A `flowdeck call` line that runs the flow on this server, with an example value for each
    required argument, taken from its schema (its examples, default or first allowed value)."""
    schema = flow.definition.get("input_schema") or {}
    properties = schema.get("properties") or {}
    words = ["flowdeck", "call", flow.name, "--url", mcp_url]
    for name in schema.get("required") or []:
        words.append(shlex.quote(f"{name}={_example_text(properties.get(name) or {})}"))
    return " ".join(words)


def _example_text(schema: dict[str, Any]) -> str:
    if schema.get("examples"):
        value = schema["examples"][0]
    elif "default" in schema:
        value = schema["default"]
    elif schema.get("enum"):
        value = schema["enum"][0]
    else:
        kind = schema.get("type")
        value = _EXAMPLES.get(kind[0] if isinstance(kind, list) and kind else kind, "text")  # type: ignore[arg-type]
    return value if isinstance(value, str) else json.dumps(value)


def _mcp_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/mcp"


def _page_number(text: str | None) -> int:
    if text in (None, ""):
        return 1
    if not text.isdigit() or int(text) < 1:  # type: ignore[union-attr]
        raise InvalidQuery(f"page must be a number from 1, not {text!r}")
    return int(text)  # type: ignore[arg-type]


def _usage_filter(request: Request, flow_id: str) -> Filter:
    """The Usage tab's filter from its URL. The filter form's ``param=KEY=VALUE`` (a person's
    spelling) is ``param.KEY=VALUE`` (the URL's)."""
    query = dict(request.query_params)
    for pair in request.query_params.getlist("param"):
        key, sep, value = pair.partition("=")
        if sep and key:
            query[f"{PARAM_PREFIX}{key.strip()}"] = value.strip()
        elif pair.strip():
            raise InvalidQuery(f"an argument filter is KEY=VALUE, not {pair!r}")
    return Filter.from_query(query, flow_id=flow_id)


@router.get("/", response_class=HTMLResponse)
def index(request: Request) -> HTMLResponse:
    db = _db(request)
    rows = []
    for flow in list_flows(db, include_deleted=True):
        newest = list_executions(db, Filter(flow_id=flow.id), per_page=1)  # the last one, and the total
        rows.append({"flow": flow, "last": newest.items[0] if newest.items else None, "total": newest.total})
    live: list[dict[str, Any]] = []
    exposed: dict[str, list[dict[str, Any]]] = {}  # by server, each server's tools together
    deleted: list[dict[str, Any]] = []
    for row in rows:
        server = row["flow"].exposed_server
        if row["flow"].deleted:
            deleted.append(row)
        elif server is None:
            live.append(row)
        else:
            exposed.setdefault(server, []).append(row)
    context = {"live": live, "exposed": dict(sorted(exposed.items())), "deleted": deleted}
    return templates.TemplateResponse(request, "index.html", context)


def _flow_page(request: Request, flow: FlowRecord, tab: str, extra: dict[str, Any]) -> HTMLResponse:
    context = {"flow": flow, "tab": tab, "call_line": call_line(flow, _mcp_url(request)), **extra}
    return templates.TemplateResponse(request, f"flow_{tab}.html", context)


@router.get("/flows/{flow_id}", response_class=HTMLResponse)
def flow_definition(request: Request, flow_id: str) -> HTMLResponse:
    flow = get_flow(_db(request), flow_id)
    text = yaml.safe_dump(flow.definition, sort_keys=False, allow_unicode=True, width=100)
    return _flow_page(request, flow, "definition", {"yaml": text, "nodes": flow.definition.get("nodes", [])})


def _usage_main(request: Request, flow: FlowRecord, where: Filter, page: int) -> dict[str, Any]:
    """The totals, the chart, and the page of the list the filter and the page number say; a page
    past the last is the last."""
    db = _db(request)
    listing = list_executions(db, where, page=page, per_page=PER_PAGE)
    if page > listing.pages:
        listing = list_executions(db, where, page=listing.pages, per_page=PER_PAGE)
    stats = flow_stats(db, flow.id)
    query = where.query()
    return {
        "flow": flow,
        "listing": listing,
        "stats": stats,
        "bars": chart(stats),
        "call_line": call_line(flow, _mcp_url(request)),
        "where": where,
        "filtered": bool(query),
        "query": urlencode(query),
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
    trace_url = request.app.state.runtime.settings.trace_url
    trace_link = None
    if trace_url and record.trace_id:
        trace_link = trace_url.replace("{trace_id}", record.trace_id)
    return {"record": record, "rows": rows, "remote_links": links, "trace_link": trace_link}


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


@router.get("/flows/{flow_id}/usage", response_class=HTMLResponse, response_model=None)
def flow_usage(
    request: Request, flow_id: str, page: str | None = None, execution: str | None = None
) -> Response:
    db = _db(request)
    flow = get_flow(db, flow_id)
    if execution:
        elsewhere = _flow_of(db, execution)
        if elsewhere is not None and elsewhere != flow_id:  # opened under its own flow
            return RedirectResponse(f"/flows/{elsewhere}/usage?execution={execution}", status_code=303)
    where = _usage_filter(request, flow_id)
    main = _usage_main(request, flow, where, _page_number(page))
    insights = flow_insights(db, flow_id, since=where.since, until=where.until)
    context = {**main, **_detail(request, execution), "selected": execution, "insights": insights}
    return _flow_page(request, flow, "usage", context)


@router.get("/flows/{flow_id}/usage/main", response_class=HTMLResponse)
def flow_usage_main(request: Request, flow_id: str, page: str | None = None) -> HTMLResponse:
    """The stats, the list and its pages, for the script to swap in (it marks the selected row)."""
    flow = get_flow(_db(request), flow_id)
    context = _usage_main(request, flow, _usage_filter(request, flow_id), _page_number(page))
    return templates.TemplateResponse(request, "_usage_main.html", context)


@router.get("/flows/{flow_id}/usage/filter", response_class=HTMLResponse)
def flow_usage_filter(request: Request, flow_id: str) -> HTMLResponse:
    """The insights of the filter's time range and the filter form, for the script to swap in when
    the filter changes."""
    db = _db(request)
    flow = get_flow(db, flow_id)
    where = _usage_filter(request, flow_id)
    insights = flow_insights(db, flow_id, since=where.since, until=where.until)
    context = {"flow": flow, "insights": insights, "where": where, "filtered": bool(where.query())}
    return templates.TemplateResponse(request, "_usage_filter.html", context)


def _flow_of(db: Engine, execution_id: str) -> str | None:
    try:
        return get_execution(db, execution_id).flow_id
    except ExecutionNotFound:
        return None


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


@router.post("/executions/{execution_id}/rerun")
async def rerun_execution(request: Request, execution_id: str) -> RedirectResponse:
    """The re-run button without the script: run it again, then show the new execution."""
    new_execution_id = await request.app.state.runtime.tracker.start_rerun(execution_id)
    record = get_execution(_db(request), new_execution_id)
    return RedirectResponse(f"/flows/{record.flow_id}/usage?execution={new_execution_id}", status_code=303)


@router.get("/executions", response_class=HTMLResponse)
def all_executions(
    request: Request, flow: str | None = None, status: str | None = None, page: str | None = None
) -> HTMLResponse:
    db = _db(request)
    where = Filter.from_query({"status": status or ""}, flow_id=flow or None)
    flows = list_flows(db, include_deleted=True)
    number = _page_number(page)
    listing = list_executions(db, where, page=number, per_page=PER_PAGE)
    if number > listing.pages:
        listing = list_executions(db, where, page=listing.pages, per_page=PER_PAGE)
    context = {
        "flows": flows,
        "listing": listing,
        "flow_filter": flow or "",
        "status_filter": where.status or "",
    }
    return templates.TemplateResponse(request, "executions.html", context)
