"""Operating flowdeck: Prometheus metrics, re-run, export, the executions resource for agents. One
server with a token serves the module, on each kind of database."""

from __future__ import annotations

import csv
import io
import json
import random
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, func, select

from flowdeck.settings import Settings
from flowdeck.states import Status
from flowdeck.store import database, export
from flowdeck.store.flows import get_flow
from flowdeck.store.json_lines import iso_sql
from flowdeck.store.prune import count_prunable, prune_executions
from flowdeck.store.reads import Filter
from flowdeck.store.seed import seed_executions
from flowdeck.store.tables import execution_counts, execution_days, execution_params, executions, steps
from flowdeck.times import DAY_US, iso, now_us, parse_iso
from tests.support.cli import flowdeck
from tests.support.server import served

TOKEN = "ops-token"
FLOWS = {
    "ok.yaml": """
name: ok
input_schema: {type: object, properties: {n: {type: integer}}, required: [n]}
nodes:
  - {id: double, type: transform, config: {value: "{{ input.n * 2 }}"}}
  - {id: pause, type: delay, config: {seconds: 0.01}}
""",
    "boom.yaml": """
name: boom
nodes:
  - {id: first, type: transform, config: {value: 1}}
  - {id: explode, type: fail, config: {message: "boom"}}
""",
    "varied.yaml": """
name: varied
input_schema: {type: object, properties: {n: {type: integer, default: 3}}}
nodes:
  - {id: a, type: transform, config: {value: "{{ input.n }}"}}
  - {id: skip_me, type: transform, when: "{{ input.n > 100 }}", config: {value: 1}}
  - {id: soft, type: fail, config: {message: "soft {{ input.n }}"}, on_error: continue}
  - {id: last, type: transform, config: {value: {"n": "{{ input.n }}", "text": "é \\"quoted\\""}}}
output: "{{ nodes.a + 1 }}"
""",
    "composite.yaml": """
name: composite
nodes:
  - {id: child, type: flow, config: {flow: varied, arguments: {n: 5}}}
  - id: each
    type: map
    config: {items: [1, 2], node: {type: transform, config: {value: "{{ item }}"}}}
  - {id: shaky, type: fail, config: {message: no}, retry: {attempts: 2}, on_error: continue}
""",
    "odd.yaml": """
name: odd
nodes:
  - {id: same, type: transform, config: {value: "{{ input }}"}}
""",
    "nap.yaml": """
name: nap
nodes:
  - {id: nap, type: delay, config: {seconds: 1.5}}
""",
}


@dataclass
class Site:
    base: str
    db: Engine
    db_url: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}

    def client(self) -> Client:
        http = create_mcp_http_client(headers=self.headers)
        return Client(streamable_http_client(f"{self.base}/mcp", http_client=http))


@pytest.fixture(scope="module")
def site(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    flows = tmp_path_factory.mktemp("operations")
    for name, text in FLOWS.items():
        (flows / name).write_text(text)
    settings = Settings(database_url=module_database_url, auth_token=TOKEN)
    db = database.open_database(module_database_url)
    with served(settings, [Path(flows)]) as base:
        yield Site(base, db, module_database_url)
    db.dispose()


def scrape(site: Site) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics``, parsed by prometheus-client's own parser."""
    response = httpx.get(f"{site.base}/metrics", headers=site.headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


# ---- metrics ---------------------------------------------------------------------------------------


async def test_metrics_count_a_known_mix_of_concurrent_calls(site: Site) -> None:
    before = scrape(site)

    async def calls(tool: str, arguments: dict[str, Any], times: int) -> None:
        async with site.client() as client:
            for _ in range(times):
                await client.call_tool(tool, arguments)

    async with anyio.create_task_group() as group:  # five clients at once
        for _ in range(3):
            group.start_soon(calls, "ok", {"n": 2}, 8)
        group.start_soon(calls, "boom", {}, 5)
        group.start_soon(calls, "ok", {"n": "two"}, 3)  # invalid arguments: recorded, and counted
    after = scrape(site)

    def added(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    total = "flowdeck_executions_total"
    assert added(total, flow="ok", status="fulfilled", error_type="") == 24
    assert added(total, flow="ok", status="error", error_type="invalid_params") == 3
    assert added(total, flow="boom", status="error", error_type="node_error") == 5
    assert added("flowdeck_execution_duration_seconds_count", flow="ok") == 27
    # each fulfilled ok ran 2 nodes of 10 ms or less, the 24 delays at least 10 ms each
    assert added("flowdeck_node_duration_seconds_count", flow="ok", node_type="delay") == 24
    assert added("flowdeck_node_duration_seconds_count", flow="ok", node_type="transform") == 24
    assert added("flowdeck_node_duration_seconds_sum", flow="ok", node_type="delay") >= 24 * 0.01
    assert added("flowdeck_node_duration_seconds_bucket", flow="ok", node_type="delay", le="0.005") == 0
    assert added("flowdeck_node_duration_seconds_count", flow="boom", node_type="fail") == 5
    assert value(after, "flowdeck_executions_in_flight", flow="ok") == 0
    assert value(after, "flowdeck_tracking_pending_writes") >= 0


async def test_a_running_call_is_in_flight_until_it_ends(site: Site) -> None:
    async with site.client() as client, anyio.create_task_group() as group:
        group.start_soon(client.call_tool, "nap", {})
        for _ in range(100):
            await anyio.sleep(0.05)
            if value(scrape(site), "flowdeck_executions_in_flight", flow="nap") == 1:
                break
        else:
            raise AssertionError("the running call never showed as in flight")
    assert value(scrape(site), "flowdeck_executions_in_flight", flow="nap") == 0


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}])
def test_metrics_need_the_token_and_never_redirect(site: Site, headers: dict[str, str]) -> None:
    response = httpx.get(f"{site.base}/metrics", headers=headers)
    assert response.status_code == 401
    assert "unauthorized" in response.json()["detail"]


# ---- re-run ----------------------------------------------------------------------------------------


def api(site: Site, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"{site.base}{path}", headers=site.headers, timeout=30, **kwargs)


async def ended(site: Site, execution_id: str) -> dict[str, Any]:
    """The execution once it has ended, as the API sends it."""
    for _ in range(200):
        record = api(site, "GET", f"/api/executions/{execution_id}").json()
        if record["status"] != "pending":
            return record
        await anyio.sleep(0.05)
    raise AssertionError(f"execution {execution_id} did not end")


async def test_rerun_runs_the_flow_as_it_is_now_with_the_same_arguments(site: Site) -> None:
    async with site.client() as client:
        first = await client.call_tool("ok", {"n": 21})
    original = first.meta["flowdeck/execution_id"]
    flow = next(f for f in api(site, "GET", "/api/flows").json()["items"] if f["name"] == "ok")
    changed = {key: flow[key] for key in ("name", "input_schema", "nodes")}
    changed["nodes"] = [{"id": "triple", "type": "transform", "config": {"value": "{{ input.n * 3 }}"}}]
    assert api(site, "PUT", f"/api/flows/{flow['id']}", json=changed).status_code == 200
    try:
        response = api(site, "POST", f"/api/executions/{original}/rerun")
        assert response.status_code == 202
        again = await ended(site, response.json()["execution_id"])
    finally:
        restored = {key: flow[key] for key in ("name", "input_schema", "nodes")}
        assert api(site, "PUT", f"/api/flows/{flow['id']}", json=restored).status_code == 200
    assert again["id"] != original
    assert (again["transport"], again["rerun_of"], again["initial_params"]) == ("rerun", original, {"n": 21})
    assert again["status"] == "fulfilled"
    assert [step["node_id"] for step in again["steps"]] == ["triple"]  # the current revision
    assert again["output"] == 63
    assert again["flow_revision"] == flow["revision"] + 1
    listed = api(site, "GET", "/api/executions", params={"flow_id": flow["id"], "per_page": 5}).json()
    assert any(item["id"] == again["id"] and item["rerun_of"] == original for item in listed["items"])


SECRET_FLOW = {
    "name": "with_secret",
    "input_schema": {
        "type": "object",
        "properties": {"user": {"type": "string"}, "password": {"type": "string", "writeOnly": True}},
    },
    "nodes": [{"id": "hi", "type": "transform", "config": {"value": "{{ input.user }}"}}],
}


async def test_rerun_is_refused_with_the_reason_for_redacted_arguments_or_a_deleted_flow(site: Site) -> None:
    created = api(site, "POST", "/api/flows", json=SECRET_FLOW).json()
    async with site.client() as client:
        with_secret = await client.call_tool("with_secret", {"user": "ann", "password": "hunter2"})
        without = await client.call_tool("with_secret", {"user": "bob"})
    refused = api(site, "POST", f"/api/executions/{with_secret.meta['flowdeck/execution_id']}/rerun")
    assert refused.status_code == 409
    assert "redacted" in refused.json()["detail"]
    allowed = api(site, "POST", f"/api/executions/{without.meta['flowdeck/execution_id']}/rerun")
    assert allowed.status_code == 202  # no secret was sent: nothing is missing

    assert api(site, "DELETE", f"/api/flows/{created['id']}").status_code == 204
    gone = api(site, "POST", f"/api/executions/{without.meta['flowdeck/execution_id']}/rerun")
    assert gone.status_code == 409
    assert "'with_secret' was deleted" in gone.json()["detail"]
    unknown = api(site, "POST", "/api/executions/no-such-execution/rerun")
    assert unknown.status_code == 404


def test_cli_rerun_prints_like_flows_run(site: Site) -> None:
    first = flowdeck("flows", "run", "ok", "--args", '{"n": 5}', database_url=site.db_url).stdout
    source = first.splitlines()[-1].split()[1]
    result = flowdeck("executions", "rerun", source, database_url=site.db_url)
    *output, summary = result.stdout.splitlines()
    assert output == first.splitlines()[:-1]  # the same output, printed the same way
    assert summary.startswith("execution ") and " fulfilled in " in summary
    record = api(site, "GET", f"/api/executions/{summary.split()[1]}").json()
    assert (record["transport"], record["rerun_of"], record["initial_params"]) == ("rerun", source, {"n": 5})
    assert json.loads("\n".join(output)) == record["output"]
    failed = flowdeck("executions", "rerun", "nope", database_url=site.db_url, ok=False)
    assert failed.exit_code == 1 and "no execution with id 'nope'" in failed.stderr


# ---- export ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def many(site: Site) -> str:
    """A flow with 450 executions (seeded): more than one batch of the export."""
    flow = {"name": "many", "nodes": [{"id": "one", "type": "transform", "config": {"value": 1}}]}
    created = api(site, "POST", "/api/flows", json=flow).json()
    seed_executions(site.db, get_flow(site.db, created["id"]), 450)
    return created["id"]


def test_export_ndjson_is_every_execution_whole_newest_first(site: Site, many: str) -> None:
    with httpx.stream(
        "GET", f"{site.base}/api/executions/export", params={"flow_id": many}, headers=site.headers
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = list(response.iter_lines())
    records = [json.loads(line) for line in lines]
    assert len(records) == 450 == len({record["id"] for record in records})
    assert [record["id"] for record in records] == sorted((record["id"] for record in records), reverse=True)
    assert records[0] == api(site, "GET", f"/api/executions/{records[0]['id']}").json()
    assert records[-1] == api(site, "GET", f"/api/executions/{records[-1]['id']}").json()
    errors = [record for record in records if record["status"] == "error"]
    only_errors = api(site, "GET", "/api/executions/export", params={"flow_id": many, "status": "error"})
    assert [json.loads(line)["id"] for line in only_errors.text.splitlines()] == [e["id"] for e in errors]


def test_export_csv_is_one_summary_per_row_with_a_header(site: Site, many: str) -> None:
    response = api(site, "GET", "/api/executions/export", params={"flow_id": many, "format": "csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == [
        "id", "flow_id", "flow_name", "status", "started_at", "ended_at", "duration_ms", "params_preview",
        "steps_done", "steps_total", "error_type", "error_node_id", "parent_execution_id", "rerun_of",
    ]  # fmt: skip
    assert len(rows) == 451
    page = api(site, "GET", f"/api/flows/{many}/executions", params={"per_page": 3}).json()["items"]
    for row, summary in zip(rows[1:4], page, strict=True):
        expected = ["" if summary[name] is None else str(summary[name]) for name in rows[0]]
        assert row == expected
    cli = flowdeck("executions", "export", "--flow", "many", "--format", "csv", database_url=site.db_url)
    assert cli.stdout_bytes.decode() == response.text  # (.stdout turns CSV's \r\n into \n)


async def test_every_exported_line_reads_as_the_api_sends_the_execution(site: Site) -> None:
    async with site.client() as client:
        await client.call_tool("varied", {})  # defaults filled, a skipped node, an error let through
        await client.call_tool("varied", {"n": "x"})  # invalid arguments
        await client.call_tool("composite", {})  # a child, a map, tries
        await client.call_tool("ok", {"n": 4})
        await client.call_tool("boom", {})
    odd_args = '{"big": Infinity, "none": NaN, "new\\nline": "a\\u2028b"}'  # Python's json reads these
    await anyio.to_thread.run_sync(
        lambda: flowdeck("flows", "run", "odd", "--args", odd_args, database_url=site.db_url)
    )
    lines = (await anyio.to_thread.run_sync(lambda: api(site, "GET", "/api/executions/export"))).text
    # lines end in \n only: JSON may hold a U+2028, which splitlines() takes for a line end too
    records = [json.loads(line) for line in lines.split("\n") if line]
    kinds = {record["flow_name"] for record in records}
    assert {"varied", "composite", "ok", "boom", "odd"} <= kinds
    odd = next(record for record in records if record["flow_name"] == "odd")
    assert odd["initial_params"] == odd["output"] == {"big": None, "none": None, "new\nline": "a\u2028b"}
    seeded = {"many", "aged", "pruned"}  # hundreds alike: one in twenty is enough
    for n, record in enumerate(records):
        if record["flow_name"] not in seeded or n % 20 == 0:
            assert record == api(site, "GET", f"/api/executions/{record['id']}").json(), record["flow_name"]


def test_the_database_writes_times_as_the_api_does(site: Site) -> None:
    """The export's lines carry times the database formats: to the millisecond, truncated, like
    ``iso``."""
    rng = random.Random(7)
    stored = [rng.randrange(4_102_444_800_000_000) for _ in range(20_000)]
    stored += [0, 999, 1_000, 59_999_999, 1_764_543_005_123_999, 1_764_543_059_999_999]
    values = ", ".join(f"({at})" for at in stored)  # integers written by the test: no injection
    dialect = site.db.dialect.name
    query = f"WITH t(at) AS (VALUES {values}) SELECT at, {iso_sql('at', dialect)} FROM t"
    with site.db.connect() as connection:
        written = connection.exec_driver_sql(query).all()
    assert len(written) == len(stored)
    assert [text for _, text in written] == [iso(at) for at, _ in written]


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ({"status": "bogus"}, "Input should be 'pending'"),
        ({"since": "yesterday"}, "since must be a time"),
        ({"format": "xml"}, "format"),
    ],
)
def test_export_refuses_a_bad_filter_before_sending_anything(
    site: Site, query: dict[str, str], says: str
) -> None:
    response = api(site, "GET", "/api/executions/export", params=query)
    assert response.status_code == 422
    assert says in json.dumps(response.json())


def export_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("flowdeck-export")]


@pytest.mark.parametrize("side_by_side", [True, False], ids=["two readers", "one reader"])
def test_export_reads_batches_at_once_and_sends_them_in_order(
    site: Site, many: str, side_by_side: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches are read by two threads at once (one where SQLite's threads can't run side by side),
    yet come out newest first, whole; closing the export part-way stops its readers."""
    monkeypatch.setattr(export, "threads_read_side_by_side", lambda: side_by_side)
    pieces = export.export_executions(site.db, Filter(flow_id=many), export.Format.NDJSON)
    first = next(pieces)
    readers = 1 if database.is_sqlite(site.db) and not side_by_side else 2
    assert len(export_threads()) == readers
    lines = (first + "".join(pieces)).split("\n")
    assert lines.pop() == ""
    ids = [json.loads(line)["id"] for line in lines]
    assert len(ids) == 450 and ids == sorted(set(ids), reverse=True)
    assert export_threads() == []
    pieces = export.export_executions(site.db, Filter(flow_id=many), export.Format.NDJSON)
    assert len(next(pieces).split("\n")) == export.BATCH[export.Format.NDJSON] + 1
    pieces.close()
    assert export_threads() == []


def test_the_cli_exports_the_lines_the_api_sends(site: Site, many: str) -> None:
    """A process of its own: on SQLite, its threads read side by side (tests/test_sqlite_library)."""
    cli = flowdeck("executions", "export", "--flow", "many", database_url=site.db_url)
    response = api(site, "GET", "/api/executions/export", params={"flow_id": many})
    lines = cli.stdout_bytes.decode().split("\n")
    assert len(lines) == 451
    assert [json.loads(line) for line in lines if line] == [
        json.loads(line) for line in response.text.split("\n") if line
    ]


# ---- prune -----------------------------------------------------------------------------------------


def kept_counts(db: Engine, flow_id: str) -> tuple[dict[str, int], dict[tuple[int, str], int]]:
    """What the counters say of a flow: per status, and per day and status (zeros left out)."""
    with db.connect() as connection:
        totals = connection.execute(
            select(execution_counts.c.status, execution_counts.c.n).where(
                execution_counts.c.flow_id == flow_id
            )
        ).all()
        days = connection.execute(
            select(execution_days.c.day, execution_days.c.status, execution_days.c.n).where(
                execution_days.c.flow_id == flow_id
            )
        ).all()
    return {status: n for status, n in totals if n}, {(day, status): n for day, status, n in days if n}


def real_counts(db: Engine, flow_id: str) -> tuple[dict[str, int], dict[tuple[int, str], int]]:
    """The same, counted from the executions themselves."""
    with db.connect() as connection:
        rows = connection.execute(
            select(executions.c.status, executions.c.started_at).where(executions.c.flow_id == flow_id)
        ).all()
    return dict(Counter(status for status, _ in rows)), dict(
        Counter((started // DAY_US, status) for status, started in rows)
    )


def orphans(db: Engine) -> tuple[int, int]:
    """Steps and argument-index rows whose execution is gone."""
    with db.connect() as connection:
        gone_steps = connection.execute(
            select(func.count()).select_from(steps).where(~steps.c.execution_id.in_(select(executions.c.id)))
        ).scalar_one()
        gone_params = connection.execute(
            select(func.count())
            .select_from(execution_params)
            .where(~execution_params.c.execution_id.in_(select(executions.c.id)))
        ).scalar_one()
    return gone_steps, gone_params


async def test_prune_while_calls_run_keeps_every_count_exact(site: Site) -> None:
    flow = {"name": "aged", "nodes": [{"id": "a", "type": "transform", "config": {"value": 1}}]}
    created = api(site, "POST", "/api/flows", json=flow).json()
    seed_executions(site.db, get_flow(site.db, created["id"]), 1600)  # spread over the last 14 days
    before_total = api(site, "GET", f"/api/flows/{created['id']}/executions").json()["total"]
    cutoff = now_us() - 7 * DAY_US
    expected = count_prunable(site.db, Filter(flow_id=created["id"]), cutoff)
    assert 0 < expected < before_total

    results: list[types.CallToolResult] = []

    async def load() -> None:
        async with site.client() as client:
            for n in range(15):
                results.append(await client.call_tool("ok", {"n": n}))

    async with anyio.create_task_group() as group:
        for _ in range(3):
            group.start_soon(load)
        deleted = await anyio.to_thread.run_sync(
            lambda: prune_executions(site.db, Filter(flow_id=created["id"]), cutoff)
        )
    assert deleted == expected
    assert len(results) == 45 and not any(result.is_error for result in results)  # no call was refused
    after_total = api(site, "GET", f"/api/flows/{created['id']}/executions").json()["total"]
    assert before_total == after_total + deleted
    assert kept_counts(site.db, created["id"]) == real_counts(site.db, created["id"])
    assert kept_counts(site.db, "no-such-flow") == ({}, {})
    assert orphans(site.db) == (0, 0)
    oldest = api(site, "GET", f"/api/flows/{created['id']}/executions", params={"page": 10_000}).json()
    assert all(parse_iso(item["started_at"]) >= cutoff for item in oldest["items"])
    searched = api(
        site, "GET", f"/api/flows/{created['id']}/executions", params={"param.priority": "1", "per_page": 100}
    ).json()  # the argument index lost exactly the pruned executions' rows
    assert (
        0
        < searched["total"]
        == len([e for e in export_lines(site, created["id"]) if e["initial_params"].get("priority") == 1])
    )


def export_lines(site: Site, flow_id: str) -> list[dict[str, Any]]:
    response = api(site, "GET", "/api/executions/export", params={"flow_id": flow_id})
    return [json.loads(line) for line in response.text.splitlines()]


async def test_a_running_execution_exports_as_the_api_shows_it(site: Site) -> None:
    """No end, no duration, a step still running: the database writes those nulls as the API does."""
    async with site.client() as client, anyio.create_task_group() as group:
        group.start_soon(client.call_tool, "nap", {})
        for _ in range(100):  # until its running step is written (its batch goes within 50 ms)
            pending = api(site, "GET", "/api/executions", params={"status": "pending"}).json()["items"]
            napping = [item for item in pending if item["flow_name"] == "nap"]
            if napping and api(site, "GET", f"/api/executions/{napping[0]['id']}").json()["steps"]:
                break
            await anyio.sleep(0.05)
        line = next(
            line for line in export_lines(site, napping[0]["flow_id"]) if line["id"] == napping[0]["id"]
        )
        shown = api(site, "GET", f"/api/executions/{line['id']}").json()
        assert line == shown
        assert (line["status"], line["ended_at"], line["duration_ms"]) == ("pending", None, None)
        assert [(s["status"], s["ended_at"], s["duration_ms"]) for s in line["steps"]] == [
            ("pending", None, None)
        ]


async def test_prune_never_touches_a_pending_execution(site: Site) -> None:
    async with site.client() as client:
        await client.call_tool("nap", {})  # one ended nap, to be pruned
        async with anyio.create_task_group() as group:
            group.start_soon(client.call_tool, "nap", {})
            for _ in range(100):
                pending = api(site, "GET", "/api/executions", params={"status": "pending"}).json()["items"]
                napping = [item for item in pending if item["flow_name"] == "nap"]
                if napping:
                    break
                await anyio.sleep(0.05)
            running, everything = napping[0], Filter(flow_id=napping[0]["flow_id"])
            ended_naps = count_prunable(site.db, everything, now_us() + DAY_US)
            assert ended_naps >= 1
            assert prune_executions(site.db, everything, now_us() + DAY_US) == ended_naps
            assert api(site, "GET", f"/api/executions/{running['id']}").json()["status"] == "pending"
    record = await ended(site, running["id"])  # its end and its step were written as usual
    assert record["status"] == "fulfilled" and [s["status"] for s in record["steps"]] == ["fulfilled"]
    assert kept_counts(site.db, running["flow_id"]) == real_counts(site.db, running["flow_id"])


def test_cli_prune_says_what_it_would_delete_then_deletes_it(site: Site) -> None:
    flow = {"name": "pruned", "nodes": [{"id": "a", "type": "transform", "config": {"value": 1}}]}
    created = api(site, "POST", "/api/flows", json=flow).json()
    seed_executions(site.db, get_flow(site.db, created["id"]), 300)
    before = iso(now_us() - 3 * DAY_US)
    expected = count_prunable(
        site.db, Filter(flow_id=created["id"], status=Status.FULFILLED), parse_iso(before)
    )
    assert expected > 0
    args = ["executions", "prune", "--before", before, "--flow", "pruned", "--status", "fulfilled"]
    dry = flowdeck(*args, "--dry-run", database_url=site.db_url)
    assert dry.stdout == f"would delete {expected} executions\n"
    assert (
        count_prunable(site.db, Filter(flow_id=created["id"], status=Status.FULFILLED), parse_iso(before))
        == expected
    )
    done = flowdeck(*args, database_url=site.db_url)
    assert done.stdout == f"deleted {expected} executions\n"
    left = api(site, "GET", f"/api/flows/{created['id']}/executions", params={"per_page": 1}).json()["total"]
    assert left == 300 - expected
    again = flowdeck(*args, database_url=site.db_url)
    assert again.stdout == "deleted 0 executions\n"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ([], "prune needs --before TIME"),
        (["--before", "last week"], "--before must be a time in ISO 8601"),
        (["--before", "2026-01-01", "--status", "done"], "status must be one of"),
    ],
)
def test_cli_prune_refuses_without_a_clear_time(site: Site, args: list[str], says: str) -> None:
    result = flowdeck("executions", "prune", *args, database_url=site.db_url, ok=False)
    assert result.exit_code == 1
    assert says in result.stderr


# ---- the executions resource -----------------------------------------------------------------------


async def why_it_failed(client: Client, tool: str) -> dict[str, Any]:
    """What an agent does: call, then read its own execution by the id in _meta."""
    result = await client.call_tool(tool, {})
    assert result.is_error
    uri = f"flowdeck://executions/{result.meta['flowdeck/execution_id']}"
    read = await client.read_resource(uri)
    (content,) = read.contents
    assert (str(content.uri), content.mime_type) == (uri, "application/json")
    return json.loads(content.text)


async def test_an_agent_reads_why_its_call_failed_over_http(site: Site) -> None:
    async with site.client() as client:
        templates = (await client.list_resource_templates()).resource_templates
        assert [(t.uri_template, t.mime_type) for t in templates] == [
            ("flowdeck://executions/{execution_id}", "application/json")
        ]
        record = await why_it_failed(client, "boom")
        with pytest.raises(MCPError) as missing:
            await client.read_resource("flowdeck://executions/no-such-id")
        with pytest.raises(MCPError) as elsewhere:
            await client.read_resource("flowdeck://flows/boom")
    assert record["error"] == {"type": "node_error", "message": "boom", "node_id": "explode"}
    assert record == api(site, "GET", f"/api/executions/{record['id']}").json()  # the API's Execution
    assert missing.value.error.code == elsewhere.value.error.code == -32002
    assert "no execution with id 'no-such-id'" in missing.value.error.message
