"""The HTTP API of CONTRACT section 5, over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from mcp import Client
from sqlalchemy import Engine

from flowdeck.settings import Settings
from flowdeck.store.flows import find_live_flow
from flowdeck.store.seed import seed_executions
from tests.support import EXAMPLES
from tests.support.server import served

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SUMMARY_FIELDS = {
    "id", "flow_id", "flow_name", "status", "started_at", "ended_at", "duration_ms", "params_preview",
    "steps_done", "steps_total",
}  # fmt: skip
HELLO = {
    "name": "greeter",
    "title": "Greeter",
    "description": "Says hello.",
    "input_schema": {"type": "object", "properties": {"who": {"type": "string"}}, "required": ["who"]},
    "nodes": [{"id": "say", "type": "transform", "config": {"value": {"text": "Hello, {{ input.who }}!"}}}],
}


@pytest.fixture
def base(settings: Settings) -> Iterator[str]:
    with served(settings, [EXAMPLES]) as url:
        yield url


@pytest.fixture
def api(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=30) as client:
        yield client


def test_flows_crud(api: httpx.Client) -> None:
    listed = api.get("/api/flows").json()["items"]
    assert sorted(flow["name"] for flow in listed) == [
        "charge_card",
        "fetch_json",
        "hello",
        "order_quote",
        "slow_report",
    ]

    created = api.post("/api/flows", json=HELLO)
    assert created.status_code == 201
    flow = created.json()
    assert {key: flow[key] for key in HELLO} == HELLO
    assert flow["revision"] == 1
    assert ISO.match(flow["created_at"]) and ISO.match(flow["updated_at"])
    assert flow["deleted_at"] is None

    assert api.get(f"/api/flows/{flow['id']}").json() == flow
    taken = api.post("/api/flows", json=HELLO)
    assert taken.status_code == 409
    assert "already exists" in taken.json()["detail"]

    changed = api.put(f"/api/flows/{flow['id']}", json={**HELLO, "description": "Says hello, again."})
    assert changed.status_code == 200
    assert changed.json()["revision"] == 2
    assert changed.json()["description"] == "Says hello, again."
    renamed = api.put(f"/api/flows/{flow['id']}", json={**HELLO, "name": "greeter2"}).json()
    assert (renamed["name"], renamed["revision"]) == ("greeter2", 3)

    assert api.delete(f"/api/flows/{flow['id']}").status_code == 204
    gone = api.get(f"/api/flows/{flow['id']}")
    assert gone.status_code == 200 and ISO.match(gone.json()["deleted_at"])
    assert "greeter2" not in [f["name"] for f in api.get("/api/flows").json()["items"]]
    assert api.delete(f"/api/flows/{flow['id']}").status_code == 404
    assert api.put(f"/api/flows/{flow['id']}", json=HELLO).status_code == 404
    assert api.post("/api/flows", json=HELLO).status_code == 201  # the name is free again


def test_unknown_flow_ids_are_404(api: httpx.Client) -> None:
    for response in (
        api.get("/api/flows/nope"),
        api.put("/api/flows/nope", json=HELLO),
        api.delete("/api/flows/nope"),
        api.get("/api/flows/nope/executions"),
        api.get("/api/executions/nope"),
    ):
        assert response.status_code == 404
        assert response.json()["detail"].startswith("no ")


def test_a_person_gets_a_page_not_json_for_what_does_not_exist(api: httpx.Client) -> None:
    for path in ("/flows/nope", "/flows/nope/usage", "/executions/nope", "/executions/nope/panel"):
        response = api.get(path)
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")
        assert "Not found" in response.text and "no " in response.text and "Traceback" not in response.text


def test_invalid_definitions_list_every_problem_with_its_place(api: httpx.Client) -> None:
    bad = {
        "name": "has space",
        "nodes": [{"id": "a", "type": "warp"}, {"id": "a", "type": "delay", "config": {"seconds": -1}}],
    }
    response = api.post("/api/flows", json=bad)
    assert response.status_code == 422
    body = response.json()
    assert body["detail"] == "the flow has 4 problems"
    places = {problem["place"] for problem in body["problems"]}
    assert places == {"name", "nodes[0].type", "nodes[1].id", "nodes[1].config.seconds"}
    flow_id = api.get("/api/flows").json()["items"][0]["id"]
    assert api.put(f"/api/flows/{flow_id}", json=bad).json()["problems"] == body["problems"]
    assert api.post("/api/flows", json=[1, 2]).status_code == 422
    nan = b'{"name": "nan_value", "nodes": [{"id": "a", "type": "transform", "config": {"value": NaN}}]}'
    refused = api.post("/api/flows", content=nan, headers={"content-type": "application/json"})
    assert refused.status_code == 422
    assert [problem["place"] for problem in refused.json()["problems"]] == ["nodes[0].config.value"]
    assert "nan_value" not in {flow["name"] for flow in api.get("/api/flows").json()["items"]}
    not_json = api.post("/api/flows", content=b"{oops", headers={"content-type": "application/json"})
    assert not_json.status_code == 422


@pytest.mark.parametrize(
    ("count", "page", "per_page", "expect_items", "expect_pages"),
    [
        (0, 1, 20, 0, 1),  # no executions
        (20, 1, 20, 20, 1),  # exactly one page
        (45, 3, 20, 5, 3),  # a partial last page
        (45, 2, 20, 20, 3),
        (45, 4, 20, 0, 3),  # past the end
        (45, 1, 100, 45, 1),
    ],
)
def test_pagination_edges(
    api: httpx.Client,
    db: Engine,
    count: int,
    page: int,
    per_page: int,
    expect_items: int,
    expect_pages: int,
) -> None:
    flow = find_live_flow(db, "hello")
    seed_executions(db, flow, count)
    body = api.get(f"/api/flows/{flow.id}/executions", params={"page": page, "per_page": per_page}).json()
    assert (len(body["items"]), body["total"], body["pages"], body["page"], body["per_page"]) == (
        expect_items, count, expect_pages, page, per_page,
    )  # fmt: skip
    every = api.get(f"/api/flows/{flow.id}/executions", params={"per_page": 100}).json()["items"]
    ids = [item["id"] for item in every]
    assert ids == sorted(ids, reverse=True)  # newest first
    if expect_items:
        start = (page - 1) * per_page
        assert [item["id"] for item in body["items"]] == ids[start : start + per_page]


def test_pages_read_from_both_ends_agree(api: httpx.Client, db: Engine) -> None:
    flow = find_live_flow(db, "hello")
    seed_executions(db, flow, 230)
    seen = []
    for page in range(1, 13):
        seen += [
            item["id"]
            for item in api.get(f"/api/flows/{flow.id}/executions", params={"page": page}).json()["items"]
        ]
    assert len(seen) == 230 == len(set(seen))
    assert seen == sorted(seen, reverse=True)


def test_status_filter_and_bad_query_values(api: httpx.Client, db: Engine) -> None:
    flow = find_live_flow(db, "hello")
    seed_executions(db, flow, 60)
    everything = api.get(f"/api/flows/{flow.id}/executions", params={"per_page": 100}).json()
    errors = api.get(f"/api/flows/{flow.id}/executions", params={"status": "error", "per_page": 100}).json()
    assert errors["total"] == sum(1 for item in everything["items"] if item["status"] == "error") > 0
    assert {item["status"] for item in errors["items"]} == {"error"}
    empty_filter = api.get(f"/api/flows/{flow.id}/executions?page=1&per_page=20&status=").json()
    assert empty_filter["total"] == 60
    for query in ({"status": "done"}, {"page": 0}, {"per_page": 0}, {"per_page": 101}, {"page": "x"}):
        response = api.get(f"/api/flows/{flow.id}/executions", params=query)
        assert response.status_code == 422, query
        assert response.json()["detail"][0]["loc"][0] == "query"


async def test_executions_across_flows_and_one_execution(base: str, api: httpx.Client, db: Engine) -> None:
    async with Client(f"{base}/mcp") as mcp:
        fulfilled = await mcp.call_tool("order_quote", {"item": "pen", "unit_price": 2})
        failed = await mcp.call_tool("charge_card", {"amount": 5000})
    across = api.get("/api/executions").json()
    assert across["total"] == 2
    assert set(across["items"][0]) >= SUMMARY_FIELDS
    assert [item["flow_name"] for item in across["items"]] == ["charge_card", "order_quote"]
    charge_id = across["items"][0]["flow_id"]
    only_charge = api.get("/api/executions", params={"flow_id": charge_id}).json()
    assert [item["id"] for item in only_charge["items"]] == [failed.meta["flowdeck/execution_id"]]
    assert api.get("/api/executions", params={"status": "fulfilled"}).json()["total"] == 1

    execution = api.get(f"/api/executions/{fulfilled.meta['flowdeck/execution_id']}").json()
    assert set(execution) >= SUMMARY_FIELDS | {
        "initial_params",
        "data",
        "error",
        "steps",
        "client",
        "transport",
    }
    assert execution["status"] == "fulfilled" and execution["error"] is None
    assert ISO.match(execution["started_at"]) and ISO.match(execution["ended_at"])
    assert execution["duration_ms"] >= 0
    assert execution["initial_params"] == {"item": "pen", "unit_price": 2}
    assert execution["data"]["input"] == {"item": "pen", "unit_price": 2, "quantity": 1, "discount_code": ""}
    assert [(s["index"], s["node_id"], s["status"]) for s in execution["steps"]] == [
        (0, "subtotal", "fulfilled"), (1, "discount", "skipped"), (2, "total", "fulfilled"),
    ]  # fmt: skip
    assert execution["steps"][0]["output"] == 2
    assert execution["client"]["name"] == "mcp" and execution["transport"] == "http"
    assert (execution["steps_done"], execution["steps_total"]) == (3, 3)

    with_data = api.get(f"/api/executions/{execution['id']}", params={"data_after": True}).json()
    assert with_data["steps"][0]["data_after"]["nodes"] == {"subtotal": 2}
    assert with_data["steps"][2]["data_after"]["nodes"] == {"subtotal": 2, "total": 2}

    error = api.get(f"/api/executions/{failed.meta['flowdeck/execution_id']}").json()
    assert error["error"] == {
        "type": "node_error",
        "message": "amount 5000 EUR is over the 1000 limit",
        "node_id": "charge",
    }
    assert error["params_preview"] == "amount: 5000"


def test_a_deleted_flows_executions_stay_listed_with_its_name(api: httpx.Client, db: Engine) -> None:
    flow = find_live_flow(db, "hello")
    seed_executions(db, flow, 3)
    assert api.delete(f"/api/flows/{flow.id}").status_code == 204
    page = api.get(f"/api/flows/{flow.id}/executions").json()
    assert page["total"] == 3
    assert {item["flow_name"] for item in page["items"]} == {"hello"}
    across = api.get("/api/executions", params={"flow_id": flow.id}).json()
    assert across["total"] == 3


def test_openapi_describes_every_route(api: httpx.Client) -> None:
    spec = api.get("/openapi.json").json()
    paths = spec["paths"]
    for path, methods in {
        "/api/flows": {"get", "post"},
        "/api/flows/{flow_id}": {"get", "put", "delete"},
        "/api/flows/{flow_id}/executions": {"get"},
        "/api/executions": {"get"},
        "/api/executions/{execution_id}": {"get"},
        "/api/flows/{flow_id}/events": {"get"},
        "/api/executions/{execution_id}/events": {"get"},
    }.items():
        assert set(paths[path]) >= methods, path
    schemas = spec["components"]["schemas"]
    assert {"Flow", "ExecutionPage", "ExecutionSummary", "Execution", "FlowProblems"} <= set(schemas)
