"""A flow's insights and the filtered lists (CONTRACT sections 5, 6 and 10): per-node figures exact
to the µs, errors grouped by their shape, lists filtered by status, time and argument; on the API,
the pages and the CLI, over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from flowdeck.settings import Settings
from flowdeck.store.flows import FlowRecord
from flowdeck.times import SECOND_US, iso, now_us
from tests.support.cli import flowdeck
from tests.support.history import CHECKOUT, HOUR_US, Ran, checkout_history, record_execution
from tests.support.server import served


@pytest.fixture
def api(settings: Settings) -> Iterator[httpx.Client]:
    with served(settings) as base, httpx.Client(base_url=base, timeout=30) as client:
        yield client


@pytest.fixture
def checkout(add_flow) -> FlowRecord:  # type: ignore[no-untyped-def]
    return add_flow(CHECKOUT)


def _ids(page: dict) -> set[str]:  # type: ignore[type-arg]
    return {item["id"] for item in page["items"]}


def test_one_execution_of_662_us_reads_662_us(api: httpx.Client, db: Engine, checkout: FlowRecord) -> None:
    record_execution(db, checkout, started_at=now_us() - HOUR_US, params={}, ran=[Ran("price", 662)])
    insights = api.get(f"/api/flows/{checkout.id}/insights").json()
    assert insights["executions"] == 1
    assert insights["nodes"] == [
        {
            "node_id": "price",
            "node_type": "transform",
            "runs": 1,
            "errors": 0,
            "error_rate": 0.0,
            "p50_ms": 0.662,
            "p95_ms": 0.662,
        }
    ]
    assert insights["errors"] == []
    page = api.get(f"/flows/{checkout.id}/usage").text
    assert "662 µs" in page and "700 µs" not in page


def test_insights_per_node_and_errors_grouped_by_shape(
    api: httpx.Client, db: Engine, checkout: FlowRecord
) -> None:
    start = now_us() - HOUR_US
    made = checkout_history(db, checkout, start)
    insights = api.get(f"/api/flows/{checkout.id}/insights").json()
    assert insights["executions"] == 20
    nodes = {node["node_id"]: node for node in insights["nodes"]}
    assert [node["node_id"] for node in insights["nodes"]] == ["price", "charge", "ship"]  # in flow order
    # nearest rank over 1..20 ms: the 10th and the 19th
    assert (nodes["price"]["runs"], nodes["price"]["p50_ms"], nodes["price"]["p95_ms"]) == (20, 10.0, 19.0)
    assert (nodes["charge"]["runs"], nodes["charge"]["errors"]) == (20, 6)
    assert nodes["charge"]["error_rate"] == pytest.approx(0.3)
    assert (nodes["ship"]["runs"], nodes["ship"]["errors"], nodes["ship"]["p95_ms"]) == (14, 0, 0.1)

    declined, timed_out = insights["errors"]  # the most frequent first
    assert declined["message"] == 'card <n> declined for "…"'
    assert (declined["node_id"], declined["type"], declined["count"]) == ("charge", "node_error", 5)
    assert declined["first_seen"] == iso(start + 3 * SECOND_US)
    assert declined["last_seen"] == iso(start + 15 * SECOND_US)
    assert declined["example_execution_id"] == made["declined"][-1]  # the latest
    assert (timed_out["message"], timed_out["count"]) == ("gateway timed out", 1)

    # a group's filter lists exactly its executions
    grouped = api.get(
        f"/api/flows/{checkout.id}/executions",
        params={"status": "error", "error_node_id": "charge", "error_type": "node_error",
                "error": declined["message"]},
    ).json()  # fmt: skip
    assert grouped["total"] == 5 and _ids(grouped) == set(made["declined"])


def test_insights_over_a_time_range(api: httpx.Client, db: Engine, checkout: FlowRecord) -> None:
    start = now_us() - HOUR_US
    checkout_history(db, checkout, start)
    # an end given to the ms includes that whole ms (``started_at`` as shown, copied)
    window = {"since": iso(start + 1 * SECOND_US), "until": iso(start + 10 * SECOND_US)}
    insights = api.get(f"/api/flows/{checkout.id}/insights", params=window).json()
    assert insights["executions"] == 10
    price = insights["nodes"][0]
    assert (price["runs"], price["p50_ms"], price["p95_ms"]) == (10, 5.0, 10.0)
    assert [group["count"] for group in insights["errors"]] == [3]  # k = 3, 6, 9
    refused = api.get(f"/api/flows/{checkout.id}/insights", params={"since": "yesterday"})
    assert refused.status_code == 422
    assert "since must be a time in ISO 8601" in refused.json()["detail"]
    assert api.get("/api/flows/no-such-flow/insights").status_code == 404


def test_lists_filtered_by_status_time_and_argument(
    api: httpx.Client, db: Engine, checkout: FlowRecord
) -> None:
    start = now_us() - HOUR_US
    made = checkout_history(db, checkout, start)
    listed = partial(api.get, f"/api/flows/{checkout.id}/executions")

    errors = listed(params={"status": "error"}).json()
    assert errors["total"] == 6 and _ids(errors) == set(made["declined"] + made["timeout"])

    window = listed(params={"since": iso(start + 5 * SECOND_US), "until": iso(start + 8 * SECOND_US)}).json()
    assert _ids(window) == set(made["all"][4:8]) and window["total"] == 4

    # a string argument as it is; another type as its JSON text, given with or without quotes
    assert _ids(listed(params={"param.order_id": "ord-7"}).json()) == {made["all"][6]}
    assert _ids(listed(params={"param.qty": "3"}).json()) == set(made["qty3"])
    assert listed(params={"param.qty": "three"}).json()["total"] == 0
    assert listed(params={"param.order_id": "ord"}).json()["total"] == 0  # equal, not "contains"

    # every condition given must hold, and paging counts only matches
    both = listed(params={"param.qty": "3", "status": "error", "per_page": 1}).json()
    expected = set(made["qty3"]) & set(made["declined"] + made["timeout"])
    assert both["total"] == len(expected) == 2 and both["pages"] == 2 and _ids(both) <= expected

    # the all-flows list takes the same filters
    everywhere = api.get("/api/executions", params={"param.order_id": "ord-7", "status": "fulfilled"}).json()
    assert _ids(everywhere) == {made["all"][6]}

    for query, reason in [
        ({"status": "bogus"}, "'pending', 'fulfilled', 'error'"),
        ({"until": "soon"}, "until must be a time in ISO 8601"),
        ({"error_type": "oops"}, "error_type must be one of"),
    ]:
        refused = listed(params=query)
        assert refused.status_code == 422, query
        assert reason in refused.text


def test_pages_say_why_a_query_cannot_be_shown(api: httpx.Client, db: Engine, checkout: FlowRecord) -> None:
    made = checkout_history(db, checkout, now_us() - HOUR_US)
    usage = f"/flows/{checkout.id}/usage"
    for query, reason in [
        ("page=0", "page must be a number from 1, not &#39;0&#39;"),
        ("page=abc", "page must be a number from 1, not &#39;abc&#39;"),
        ("status=bogus", "status must be one of"),
        ("param=justakey", "an argument filter is KEY=VALUE"),
    ]:
        shown = api.get(f"{usage}?{query}")
        assert shown.status_code == 422, query
        assert shown.headers["content-type"].startswith("text/html")
        assert reason in shown.text, query
        assert f'href="{usage}"' in shown.text  # a way back

    # a page past the last is the last; the filter form's KEY=VALUE is the URL's param.KEY
    last = api.get(f"{usage}?page=99").text
    assert '<span class="current" aria-current="page">1</span>' in last and made["all"][0] in last
    filtered = api.get(f"{usage}?param=order_id%3Dord-7").text
    assert filtered.count('data-testid="execution-item"') == 1 and made["all"][6] in filtered


def test_an_execution_of_another_flow_opens_under_its_own(
    api: httpx.Client, db: Engine, checkout: FlowRecord, add_flow
) -> None:  # type: ignore[no-untyped-def]
    other = add_flow(CHECKOUT.replace("name: checkout", "name: refund"))
    theirs = record_execution(db, other, started_at=now_us() - HOUR_US, params={}, ran=[Ran("price", 10)])
    opened = api.get(f"/flows/{checkout.id}/usage?execution={theirs}", follow_redirects=False)
    assert opened.status_code == 303
    assert opened.headers["location"] == f"/flows/{other.id}/usage?execution={theirs}"


def test_the_cli_filters_by_time_and_argument(database_url: str, db: Engine, checkout: FlowRecord) -> None:
    start = now_us() - HOUR_US
    made = checkout_history(db, checkout, start)
    run = partial(flowdeck, database_url=database_url)

    def listed(*args: str) -> set[str]:
        page = json.loads(
            run("executions", "list", "--flow", "checkout", "--per-page", "100", "--json", *args).stdout
        )
        return {item["id"] for item in page["items"]}

    assert listed("--since", iso(start + 18 * SECOND_US)) == set(made["all"][17:])
    assert listed("--until", iso(start + 2 * SECOND_US)) == set(made["all"][:2])
    assert listed("--param", "order_id=ord-7") == {made["all"][6]}
    assert listed("--param", "qty=3", "--status", "error") == set(made["qty3"]) & set(
        made["declined"] + made["timeout"]
    )
    table = run("executions", "list", "--flow", "checkout", "--param", "order_id=ord-7").stdout
    assert made["all"][6] in table and "order_id: ord-7" in table and "(1 executions)" in table

    refused = run("executions", "list", "--since", "yesterday", ok=False)
    assert refused.exit_code == 1
    assert "--since must be a time in ISO 8601" in refused.output
    refused = run("executions", "list", "--param", "justakey", ok=False)
    assert refused.exit_code == 1 and "--param is KEY=VALUE" in refused.output


def test_seed_writes_to_the_database_it_is_given(
    tmp_path: Path, database_url: str, checkout: FlowRecord
) -> None:
    elsewhere = f"sqlite:///{tmp_path / 'not-this-one.db'}"
    seeded = flowdeck(
        "executions", "seed", "--flow", "checkout", "--count", "25", "--database-url", database_url,
        database_url=elsewhere,
    )  # fmt: skip
    assert "seeded 25 executions of checkout" in seeded.stdout
    page = json.loads(flowdeck("executions", "list", "--json", database_url=database_url).stdout)
    assert page["total"] == 25
    assert not (tmp_path / "not-this-one.db").exists()
