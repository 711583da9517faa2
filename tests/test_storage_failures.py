"""A database that refuses writes: the call fails with a clear error and no node runs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from flowdeck.engine import PreparedFlow, run_flow
from flowdeck.flows import load_flow_text
from flowdeck.settings import Settings
from flowdeck.store import db
from flowdeck.store.executions import list_executions
from flowdeck.store.flows import import_flow
from flowdeck.tracking import CallInfo, Recorder, RecordingError, Tracker
from flowdeck.tracking.writer import Writer
from tests.conftest import Probe
from tests.support.postgres import Cluster

PROBED = "name: probed\nnodes:\n  - {id: p, type: probe, config: {value: ran}}\n"


async def test_a_read_only_sqlite_database_refuses_the_call_before_any_node(
    tmp_path: Path, probe: Probe
) -> None:
    path = tmp_path / "ro.db"
    db.upgrade(db.open_engine(f"sqlite:///{path}"))
    read_only = db.open_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    writer = Writer(read_only)
    writer.start()
    recorder = Recorder(writer, "runner-1", CallInfo("cli"), 1 << 20)
    try:
        with pytest.raises(
            RecordingError, match=r"cannot record the execution, so the flow was not run: .*readonly"
        ):
            await run_flow(PreparedFlow(load_flow_text(PROBED)), {}, recorder, execution_id="e1")
    finally:
        await writer.close()
    assert probe.calls == []


async def test_a_stopped_postgresql_refuses_the_call_and_recovers_when_back(probe: Probe) -> None:
    cluster = Cluster().start()
    try:
        url = cluster.create_database("flowdeck")
        engine = db.open_engine(url)
        db.upgrade(engine)
        record, _ = import_flow(engine, load_flow_text(PROBED).model_dump(exclude_none=True))
        async with Tracker(engine, Settings(database_url=url), kind="test") as tracker:
            flow = tracker.prepare(record)
            first = await tracker.run(flow, {}, CallInfo("cli"))
            assert first.status == "fulfilled"
            cluster.stop()
            with pytest.raises(RecordingError, match="cannot record the execution, so the flow was not run"):
                await tracker.run(flow, {}, CallInfo("cli"))
            assert probe.calls == [first.execution_id]
            cluster.start()
            again = await asyncio.wait_for(tracker.run(flow, {}, CallInfo("cli")), 30)
            assert again.status == "fulfilled"
        assert list_executions(engine).total == 2
        engine.dispose()
    finally:
        cluster.remove()
