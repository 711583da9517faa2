"""Tracking on SQLite and PostgreSQL: what each execution records, and the guarantees around it."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from flowdeck.engine import NodeContext, NodeType, node_types
from flowdeck.events import EventHub
from flowdeck.flowfiles import load_flow_text
from flowdeck.settings import Settings
from flowdeck.states import StepStatus
from flowdeck.store import database
from flowdeck.store.flows import delete_flow, get_flow, import_flow
from flowdeck.store.reads import Filter, get_execution, list_executions
from flowdeck.store.writes import StepRow
from flowdeck.tracking import CallInfo, Tracker
from flowdeck.tracking.writer import Writer

CLI = CallInfo("cli")

THREE_STEPS = """
name: three
input_schema:
  type: object
  properties:
    who: {type: string}
    n: {type: integer, default: 5}
  required: [who]
nodes:
  - {id: first, type: transform, config: {value: {who: "{{ input.who }}", twice: "{{ input.n * 2 }}"}}}
  - {id: second, type: transform, config: {value: "{{ nodes.first.twice + 1 }}"}}
  - {id: third, type: transform, config: {value: ["{{ nodes.second }}", "{{ execution.flow }}"]}}
"""


@pytest.fixture
async def tracker(db: Engine, settings: Settings):  # type: ignore[no-untyped-def]
    tracker = await Tracker(db, settings, kind="test").start()
    yield tracker
    await tracker.close()


async def test_a_fulfilled_execution_records_params_steps_and_data(
    tracker: Tracker, db: Engine, add_flow
) -> None:
    flow = add_flow(THREE_STEPS)
    run = await tracker.run(tracker.prepare(flow), {"who": "ada"}, CallInfo("stdio", "inspector", "1.2"))
    assert run.status == "fulfilled"
    assert run.output == [11, "three"]

    record = get_execution(db, run.execution_id)
    assert record.status == "fulfilled"
    assert record.flow_id == flow.id and record.flow_name == "three"
    assert record.initial_params == {"who": "ada"}
    assert record.data["input"] == {"who": "ada", "n": 5}
    assert asdict(record.client) == {"name": "inspector", "version": "1.2"}
    assert record.transport == "stdio"
    assert record.error is None
    assert record.ended_at >= record.started_at
    assert [(s.index, s.node_id, s.node_type, s.status) for s in record.steps] == [
        (0, "first", "transform", "fulfilled"),
        (1, "second", "transform", "fulfilled"),
        (2, "third", "transform", "fulfilled"),
    ]
    assert [s.output for s in record.steps] == [{"who": "ada", "twice": 10}, 11, [11, "three"]]
    assert all(s.ended_at is not None and s.ended_at >= s.started_at for s in record.steps)
    assert record.data == {
        "input": {"who": "ada", "n": 5},
        "nodes": {"first": {"who": "ada", "twice": 10}, "second": 11, "third": [11, "three"]},
    }
    assert record.output == [11, "three"]
    assert (record.steps_done, record.steps_total) == (3, 3)
    assert record.params_preview == "who: ada"


async def test_the_data_after_each_node_is_rebuilt_from_the_steps(
    tracker: Tracker, db: Engine, add_flow
) -> None:
    run = await tracker.run(tracker.prepare(add_flow(THREE_STEPS)), {"who": "b", "n": 1}, CLI)
    record = get_execution(db, run.execution_id)
    base = {"who": "b", "n": 1}
    assert record.data_after(-1) == {"input": base, "nodes": {}}
    assert record.data_after(0) == {"input": base, "nodes": {"first": {"who": "b", "twice": 2}}}
    assert record.data_after(1) == {"input": base, "nodes": {"first": {"who": "b", "twice": 2}, "second": 3}}
    assert record.data_after(2)["nodes"]["third"] == [3, "three"]


async def test_an_error_at_node_k_names_it_and_later_nodes_do_not_run(
    tracker: Tracker, db: Engine, add_flow
) -> None:
    flow = add_flow("""
name: breaks
nodes:
  - {id: ok, type: transform, config: {value: 1}}
  - {id: boom, type: fail, config: {message: "broke with {{ nodes.ok }}"}}
  - {id: never, type: transform, config: {value: 2}}
""")
    run = await tracker.run(tracker.prepare(flow), {}, CLI)
    record = get_execution(db, run.execution_id)
    assert record.status == "error"
    assert asdict(record.error) == {"type": "node_error", "message": "broke with 1", "node_id": "boom"}
    assert [(s.node_id, s.status, s.error) for s in record.steps] == [
        ("ok", "fulfilled", None),
        ("boom", "error", "broke with 1"),
    ]
    assert record.output is None


async def test_a_template_error_is_the_nodes_error(tracker: Tracker, db: Engine, add_flow) -> None:
    flow = add_flow(
        "name: t\nnodes:\n  - {id: a, type: transform, config: {value: '{{ input.nothing.here }}'}}\n"
    )
    run = await tracker.run(tracker.prepare(flow), {}, CLI)
    record = get_execution(db, run.execution_id)
    assert record.error.type == "node_error" and record.error.node_id == "a"
    assert "has no attribute 'nothing'" in record.error.message


async def test_when_skips_a_node(tracker: Tracker, db: Engine, add_flow) -> None:
    flow = add_flow("""
name: skipper
input_schema: {type: object, properties: {go: {type: boolean}}}
nodes:
  - {id: maybe, type: transform, when: "{{ input.go }}", config: {value: ran}}
  - {id: after, type: transform, config: {value: "{{ nodes.maybe is defined }}"}}
""")
    skipped = await tracker.run(tracker.prepare(flow), {"go": False}, CLI)
    ran = await tracker.run(tracker.prepare(flow), {"go": True}, CLI)
    record = get_execution(db, skipped.execution_id)
    assert [(s.node_id, s.status) for s in record.steps] == [("maybe", "skipped"), ("after", "fulfilled")]
    assert record.output is False and record.status == "fulfilled"
    assert get_execution(db, ran.execution_id).output is True


async def test_invalid_params_are_recorded_and_no_node_runs(tracker: Tracker, db: Engine, add_flow) -> None:
    run = await tracker.run(tracker.prepare(add_flow(THREE_STEPS)), {"who": 3, "n": "x"}, CLI)
    record = get_execution(db, run.execution_id)
    assert record.status == "error"
    assert record.error.type == "invalid_params" and record.error.node_id is None
    assert "who: 3 is not of type 'string'" in record.error.message
    assert "n: 'x' is not of type 'integer'" in record.error.message
    assert record.initial_params == {"who": 3, "n": "x"}
    assert record.steps == []


async def test_timeout_names_the_running_node(db: Engine, settings: Settings, add_flow) -> None:
    flow = add_flow("""
name: slow
timeout_s: 0.3
nodes:
  - {id: quick, type: transform, config: {value: 1}}
  - {id: sleepy, type: delay, config: {seconds: 30}}
""")
    async with Tracker(db, settings, kind="test") as tracker:
        run = await asyncio.wait_for(tracker.run(tracker.prepare(flow), {}, CLI), 10)
    record = get_execution(db, run.execution_id)
    assert asdict(record.error) == {
        "type": "timeout",
        "message": "timed out after 0.3 s",
        "node_id": "sleepy",
    }
    assert [(s.node_id, s.status) for s in record.steps] == [("quick", "fulfilled"), ("sleepy", "error")]
    assert 250 <= record.duration_ms < 5000


async def test_the_default_timeout_comes_from_the_settings(db: Engine, settings: Settings, add_flow) -> None:
    flow = add_flow("name: s\nnodes:\n  - {id: z, type: delay, config: {seconds: 30}}\n")
    async with Tracker(db, settings.model_copy(update={"execution_timeout_s": 0.2}), kind="test") as tracker:
        run = await tracker.run(tracker.prepare(flow), {}, CLI)
    assert (run.error.type, run.error.node_id) == ("timeout", "z")


async def test_cancellation_stops_the_running_node_and_is_recorded(
    tracker: Tracker, db: Engine, add_flow
) -> None:
    flow = add_flow("""
name: long
nodes:
  - {id: one, type: transform, config: {value: 1}}
  - {id: wait, type: delay, config: {seconds: 30}}
  - {id: never, type: transform, config: {value: 2}}
""")
    task = asyncio.create_task(tracker.run(tracker.prepare(flow), {"k": 1}, CLI))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    page = list_executions(db, Filter(flow_id=flow.id))
    record = get_execution(db, page.items[0].id)
    assert asdict(record.error) == {"type": "cancelled", "message": "cancelled", "node_id": "wait"}
    assert [(s.node_id, s.status, s.error) for s in record.steps] == [
        ("one", "fulfilled", None),
        ("wait", "error", "cancelled"),
    ]


async def test_pending_is_committed_before_the_first_node_and_steps_show_while_running(
    tracker: Tracker, db: Engine, add_flow
) -> None:
    seen: list[Any] = []

    class Peek(NodeType):
        """Looks at the database, from another connection, while it runs."""

        name = "peek"
        Config = node_types()["transform"].Config

        async def run(self, config: Any, context: NodeContext) -> Any:
            seen.append(list_executions(db).items[0])
            return "peeked"

    node_types()["peek"] = Peek()
    try:
        flow = add_flow("""
name: peeking
nodes:
  - {id: look, type: peek}
  - {id: pause, type: delay, config: {seconds: 0.5}}
""")
        task = asyncio.create_task(tracker.run(tracker.prepare(flow), {}, CLI))
        await asyncio.sleep(0.25)
        midway = get_execution(db, list_executions(db, Filter(flow_id=flow.id)).items[0].id)
        run = await task
    finally:
        del node_types()["peek"]
    assert seen[0].id == run.execution_id and seen[0].status == "pending"
    assert midway.status == "pending"
    assert [(s.node_id, s.status) for s in midway.steps] == [("look", "fulfilled"), ("pause", "pending")]
    assert midway.steps_done == 1
    # the final state was committed before the result came back
    assert get_execution(db, run.execution_id).status == "fulfilled"


async def test_200_concurrent_executions_each_keep_their_own_data(
    tracker: Tracker, db: Engine, add_flow
) -> None:
    flow = add_flow("""
name: parallel
input_schema: {type: object, properties: {i: {type: integer}}, required: [i]}
nodes:
  - {id: square, type: transform, config: {value: "{{ input.i * input.i }}"}}
  - {id: nap, type: delay, config: {seconds: 0.01}}
  - {id: tag, type: transform, config: {value: "run-{{ input.i }}-{{ nodes.square }}"}}
""")
    prepared = tracker.prepare(flow)
    runs = await asyncio.gather(*(tracker.run(prepared, {"i": i}, CLI) for i in range(200)))
    assert [run.output for run in runs] == [f"run-{i}-{i * i}" for i in range(200)]
    page = list_executions(db, Filter(flow_id=flow.id), per_page=100)
    assert page.total == 200
    assert len({run.execution_id for run in runs}) == 200
    for i, run in enumerate(runs):
        record = get_execution(db, run.execution_id)
        assert record.status == "fulfilled"
        assert record.initial_params == {"i": i}
        assert record.data["nodes"] == {"square": i * i, "nap": {"slept_s": 0.01}, "tag": f"run-{i}-{i * i}"}


async def test_a_deleted_flows_executions_stay_with_its_name(tracker: Tracker, db: Engine, add_flow) -> None:
    flow = add_flow(THREE_STEPS)
    run = await tracker.run(tracker.prepare(flow), {"who": "x"}, CLI)
    delete_flow(db, flow.id)
    assert get_flow(db, flow.id).deleted
    page = list_executions(db, Filter(flow_id=flow.id))
    assert [(item.id, item.flow_name) for item in page.items] == [(run.execution_id, "three")]
    assert get_execution(db, run.execution_id).flow_name == "three"
    # a new flow may take the name; the old executions stay with the old id
    again = add_flow(THREE_STEPS)
    assert again.id != flow.id
    assert list_executions(db, Filter(flow_id=again.id)).total == 0


async def test_oversized_values_are_cut_and_marked(db: Engine, settings: Settings, add_flow) -> None:
    flow = add_flow("""
name: big
nodes:
  - {id: blow_up, type: transform, config: {value: "{{ input.text * 3 }}"}}
  - {id: small, type: transform, config: {value: "{{ nodes.blow_up | length }}"}}
""")
    small_cap = settings.model_copy(update={"max_value_bytes": 2048})
    async with Tracker(db, small_cap, kind="test") as tracker:
        run = await tracker.run(tracker.prepare(flow), {"text": "é" * 1000}, CLI)
    assert run.output == 3000  # the run itself used the whole value
    record = get_execution(db, run.execution_id)
    assert record.params_truncated is False
    first, second = record.steps
    assert first.output_truncated is True
    assert first.output["$truncated"]["bytes"] == 6002 and first.output["$truncated"]["max_bytes"] == 2048
    assert second.output_truncated is False and second.output == 3000

    async with Tracker(db, small_cap, kind="test") as tracker:
        run = await tracker.run(tracker.prepare(flow), {"text": "x" * 5000}, CLI)
    record = get_execution(db, run.execution_id)
    assert record.params_truncated is True
    assert record.initial_params["$truncated"]["bytes"] > 5000


async def test_the_result_waits_for_the_final_commit_on_a_fresh_connection(
    database_url: str, add_flow
) -> None:
    """Read the record through a brand-new db right after the call returns."""
    db = database.open_database(database_url)
    flow = add_flow(THREE_STEPS)
    async with Tracker(db, Settings(database_url=database_url), kind="test") as tracker:
        for i in range(20):
            run = await tracker.run(tracker.prepare(flow), {"who": str(i)}, CLI)
            other = database.open_database(database_url)
            assert get_execution(other, run.execution_id).status == "fulfilled"
            other.dispose()
    db.dispose()


async def test_secret_arguments_are_stored_as_stars(tracker: Tracker, db: Engine, add_flow) -> None:
    flow = add_flow("""
name: login
input_schema:
  type: object
  properties:
    user: {type: string}
    password: {type: string, format: password}
    api: {type: object, properties: {key: {type: string, writeOnly: true}, region: {type: string, default: eu}}}
nodes:
  - {id: use, type: transform, config: {value: "{{ input.password | length }}-{{ input.api.key | length }}"}}
""")
    run = await tracker.run(
        tracker.prepare(flow), {"password": "hunter2", "user": "ada", "api": {"key": "sk-123"}}, CLI
    )
    assert run.output == "7-6"  # the flow got the real values
    record = get_execution(db, run.execution_id)
    assert record.initial_params == {"password": "***", "user": "ada", "api": {"key": "***"}}
    assert record.data["input"] == {"password": "***", "user": "ada", "api": {"key": "***", "region": "eu"}}
    assert record.params_preview == "password: ***"


async def test_arguments_nested_too_deeply_are_refused_and_recorded(
    tracker: Tracker, db: Engine, add_flow
) -> None:
    deep: dict = {}
    cursor = deep
    for _ in range(5000):
        cursor["x"] = {}
        cursor = cursor["x"]
    run = await tracker.run(tracker.prepare(add_flow(THREE_STEPS)), {"who": deep}, CLI)
    record = get_execution(db, run.execution_id)
    assert asdict(record.error) == {
        "type": "invalid_params",
        "message": "invalid arguments: arguments nested deeper than 64 levels",
        "node_id": None,
    }
    assert record.params_truncated is True
    assert "not storable" in record.initial_params["$truncated"]["preview"]
    assert record.steps == []


async def test_cancelled_while_its_start_is_written_it_still_ends(
    tracker: Tracker, db: Engine, add_flow
) -> None:
    flow = add_flow("name: quick_wait\nnodes:\n  - {id: nap, type: delay, config: {seconds: 5}}\n")
    task = asyncio.create_task(tracker.run(tracker.prepare(flow), {}, CLI))
    await asyncio.sleep(0)  # the start is being written (PostgreSQL: a round trip) or the node runs (SQLite)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):
        page = list_executions(db, Filter(flow_id=flow.id))
        if page.items and page.items[0].status != "pending":
            break
        await asyncio.sleep(0.02)
    assert page.total == 1
    assert (page.items[0].status, page.items[0].error_type) == ("error", "cancelled")


async def test_a_step_that_ended_keeps_its_row_whatever_lands_after(
    tracker: Tracker, db: Engine, add_flow
) -> None:
    """Batches may land out of order (on PostgreSQL, steps alone go through a connection of their
    own): an older state of a step never overwrites one that has ended."""
    run = await tracker.run(tracker.prepare(add_flow(THREE_STEPS)), {"who": "ada"}, CLI)
    ended = get_execution(db, run.execution_id).steps[0]
    writer = Writer(db, EventHub(db))
    await writer.start()
    stale = StepRow(
        execution_id=run.execution_id,
        index=0,
        node_id="first",
        node_type="transform",
        status=StepStatus.PENDING,
        started_at=ended.started_at,
        ended_at=None,
        output=None,
        output_truncated=False,
        error=None,
        attempts=None,
        items=None,
        child_execution_id=None,
        remote=None,
    )
    writer.write_step(stale)
    await writer.close()  # writes what is queued
    kept = get_execution(db, run.execution_id).steps[0]
    assert (kept.status, kept.output, kept.ended_at) == (
        "fulfilled",
        {"who": "ada", "twice": 10},
        ended.ended_at,
    )


async def test_the_wal_is_copied_back_beside_the_commits(tmp_path: Path) -> None:
    """SQLite: the writer's commits leave checkpoints to a thread of their own; they still happen."""
    url = f"sqlite:///{tmp_path / 'wal.db'}"
    db = database.open_database(url)
    database.upgrade(db)
    flow, _ = import_flow(db, load_flow_text(THREE_STEPS).model_dump(exclude_none=True))
    before = (tmp_path / "wal.db").stat().st_size
    async with Tracker(db, Settings(database_url=url), kind="test") as tracker:
        for i in range(300):  # about 100 pages of tables and indexes, written to the WAL
            await tracker.run(tracker.prepare(flow), {"who": f"w{i}"}, CLI)
        with db.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000  # others: as ever
        await asyncio.sleep(1.2)
        assert (tmp_path / "wal.db").stat().st_size > before + 200_000  # copied into the database file
    db.dispose()
