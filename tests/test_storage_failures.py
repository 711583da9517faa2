"""A database that refuses writes: a new call fails with a clear error and no node runs; the
executions already running keep their steps and ends until the database is back."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest

from flowdeck.engine import PreparedFlow, run_flow
from flowdeck.errors import RecordingFailed
from flowdeck.events import EventHub
from flowdeck.flowfiles import load_flow_text
from flowdeck.settings import Settings
from flowdeck.store import database
from flowdeck.store.flows import import_flow
from flowdeck.store.reads import get_execution, list_executions
from flowdeck.tracking import CallInfo, Recorder, Tracker
from flowdeck.tracking.metrics import Metrics
from flowdeck.tracking.writer import Writer
from tests.conftest import TEMPLATE, Probe
from tests.support.disk import fill, small_disk
from tests.support.postgres import Cluster
from tests.support.server import eventually

PROBED = "name: probed\nnodes:\n  - {id: p, type: probe, config: {value: ran}}\n"
# waits long enough for the database to go away under it, then ends
SLOW = """name: slow
nodes:
  - {id: wait, type: delay, config: {seconds: 1.5}}
  - {id: done, type: transform, config: {value: "{{ nodes.wait.slept_s > 1 }}"}}
"""


@asynccontextmanager
async def loop_stalls() -> AsyncIterator[list[float]]:
    """The longest the event loop went without running a task, in seconds, while inside."""
    longest = [0.0]

    async def tick() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            longest[0] = max(longest[0], now - last)
            last = now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.02)  # the ticker is ticking before the block starts
    try:
        yield longest
    finally:
        ticker.cancel()


async def start_slow(tracker: Tracker, db) -> tuple[asyncio.Task, str]:  # type: ignore[no-untyped-def]
    """An execution of SLOW, running: its ``pending`` row is written."""
    record, _ = import_flow(db, load_flow_text(SLOW).model_dump(exclude_none=True))
    running = asyncio.create_task(tracker.run(tracker.prepare(record), {}, CallInfo("cli")))
    await eventually(lambda: any(e.flow_name == "slow" for e in list_executions(db).items))
    return running, next(e.id for e in list_executions(db).items if e.flow_name == "slow")


def ended_whole(db, execution_id: str) -> bool:  # type: ignore[no-untyped-def]
    record = get_execution(db, execution_id)
    return record.status == "fulfilled" and [s.status for s in record.steps] == ["fulfilled"] * 2


async def test_a_read_only_sqlite_database_refuses_the_call_before_any_node(
    tmp_path: Path, probe: Probe
) -> None:
    path = tmp_path / "ro.db"
    database.upgrade(database.open_database(f"sqlite:///{path}"))
    read_only = database.open_database(f"sqlite:///file:{path}?mode=ro&uri=true")
    writer = Writer(read_only, EventHub(read_only))
    await writer.start()
    metrics = Metrics(lambda: writer.waiting)
    recorder = Recorder(writer, metrics, "runner-1", CallInfo("cli"), 1 << 20)
    try:
        with pytest.raises(
            RecordingFailed, match=r"cannot record the execution, so the flow was not run: .*readonly"
        ):
            await run_flow(PreparedFlow(load_flow_text(PROBED)), {}, recorder, execution_id="e1")
    finally:
        await writer.close()
    assert probe.calls == []
    # not an execution: nothing counted, nothing left in flight
    scrape = metrics.exposition().decode()
    assert 'flowdeck_executions_in_flight{flow="probed"} 0.0' in scrape
    assert "flowdeck_executions_total{" not in scrape


@pytest.mark.postgres
async def test_a_stopped_postgresql_refuses_the_call_and_recovers_when_back(
    probe: Probe, pg_cluster: Cluster, pg_url: str
) -> None:
    db = database.open_database(pg_url)
    record, _ = import_flow(db, load_flow_text(PROBED).model_dump(exclude_none=True))
    async with Tracker(db, Settings(database_url=pg_url), kind="test") as tracker:
        flow = tracker.prepare(record)
        first = await tracker.run(flow, {}, CallInfo("cli"))
        assert first.status == "fulfilled"
        running, running_id = await start_slow(tracker, db)
        with pg_cluster.stopped():
            with pytest.raises(RecordingFailed, match="cannot record the execution, so the flow was not run"):
                await tracker.run(flow, {}, CallInfo("cli"))
            assert probe.calls == [first.execution_id]
            with pytest.raises(RecordingFailed, match="its end is not recorded yet") as ended:
                await running
            assert ended.value.ran
            pg_cluster.start()
            again = await asyncio.wait_for(tracker.run(flow, {}, CallInfo("cli")), 30)
            assert again.status == "fulfilled"
            await eventually(lambda: ended_whole(db, running_id))  # the kept end, written
    assert list_executions(db).total == 3
    db.dispose()


async def test_sqlite_locked_past_the_busy_timeout_refuses_new_calls_and_keeps_the_running_ones(
    tmp_path: Path, probe: Probe, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(database, "SQLITE_BUSY_TIMEOUT_MS", 500)  # the same paths as 5 s, sooner
    path = tmp_path / "locked.db"
    url = f"sqlite:///{path}"
    db = database.open_database(url)
    database.upgrade(db)
    record, _ = import_flow(db, load_flow_text(PROBED).model_dump(exclude_none=True))
    async with Tracker(db, Settings(database_url=url), kind="test") as tracker:
        running, running_id = await start_slow(tracker, db)
        other_writer = sqlite3.connect(path, isolation_level=None)
        other_writer.execute("BEGIN IMMEDIATE")  # another process's write transaction, held
        async with loop_stalls() as longest:
            with pytest.raises(RecordingFailed, match="not run: database is locked"):
                await tracker.run(tracker.prepare(record), {}, CallInfo("cli"))
            with pytest.raises(RecordingFailed, match="its end is not recorded yet") as ended:
                await running
            assert ended.value.ran
            assert probe.calls == []
            assert get_execution(db, running_id).status == "pending"
            other_writer.execute("ROLLBACK")
            await eventually(lambda: ended_whole(db, running_id))
            again = await tracker.run(tracker.prepare(record), {}, CallInfo("cli"))
            assert again.status == "fulfilled"
        # the loop went on serving while the writes waited for the lock
        print(f"\nSQLite locked: the event loop's longest stall {longest[0] * 1000:.0f} ms")
        assert longest[0] < 0.3, longest  # each write would have held it 0.5 s
    other_writer.close()
    assert list_executions(db).total == 2
    said = [r.getMessage().split(":")[0] for r in caplog.records if r.name == "flowdeck.tracking"]
    assert said.count("the database refused the tracking writes, kept until it is back") == 1
    assert said.count("the database is back") == 1  # once each, however many tries in between
    db.dispose()


async def test_stopped_while_the_database_is_locked_its_running_executions_end_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database, "SQLITE_BUSY_TIMEOUT_MS", 300)
    path = tmp_path / "stopped.db"
    url = f"sqlite:///{path}"
    db = database.open_database(url)
    database.upgrade(db)
    tracker = await Tracker(db, Settings(database_url=url), kind="test").start()
    running, running_id = await start_slow(tracker, db)
    other_writer = sqlite3.connect(path, isolation_level=None)
    other_writer.execute("BEGIN IMMEDIATE")
    with pytest.raises(RecordingFailed, match="its end is not recorded yet"):
        await running
    await tracker.close()  # its end still can't be written: it is left to recovery
    other_writer.execute("ROLLBACK")
    other_writer.close()
    assert get_execution(db, running_id).status == "pending"
    await asyncio.sleep(0.3)
    async with Tracker(db, Settings(database_url=url, stale_after_s=0.2), kind="test") as restarted:
        assert restarted.recovered == 1
    summary = get_execution(db, running_id)
    assert (summary.status, summary.error_type) == ("error", "interrupted")
    db.dispose()


BIG = """name: big
nodes:
  - {id: make, type: transform, config: {value: "{{ input.blob }}"}}
  - {id: tag, type: probe, config: {value: done}}
"""
# a disk for the database's files; a new PostgreSQL database takes about 8 MB of catalogs
DISK_SIZE = {"sqlite": "8m", "postgres": "24m"}


@contextmanager
def database_on(disk: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated database of the test's kind whose files are on ``disk``: its URL. PostgreSQL's is a
    database of the session's cluster in a tablespace on that disk (its log, the WAL, stays on the
    cluster's own disk: a server whose WAL can't be written stops, by design)."""
    if request.param == "sqlite":
        url = f"sqlite:///{disk / 'flowdeck.db'}"
        database.upgrade(database.open_database(url))
        yield url
        return
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    folder = disk / "tablespace"
    folder.mkdir()
    cluster.give_to_server(folder)
    cluster.execute(f"CREATE TABLESPACE small_disk LOCATION '{folder}'")
    name = "on_small_disk"
    try:
        url = cluster.create_database(name, template=TEMPLATE, tablespace="small_disk")
        yield url
    finally:
        cluster.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        cluster.execute("DROP TABLESPACE small_disk")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def kind(request: pytest.FixtureRequest) -> pytest.FixtureRequest:
    return request


async def test_a_full_disk_refuses_new_calls_with_a_clear_error_and_corrupts_nothing(
    probe: Probe, kind: pytest.FixtureRequest
) -> None:
    with small_disk(DISK_SIZE[kind.param]) as disk, database_on(disk, kind) as url:
        db = database.open_database(url)
        record, _ = import_flow(db, load_flow_text(BIG).model_dump(exclude_none=True))
        filler = fill(disk, keep_bytes=2 << 20)
        returned: dict[str, str] = {}
        ended_later: list[str] = []
        async with Tracker(db, Settings(database_url=url), kind="test") as tracker:
            flow = tracker.prepare(record)
            refused: RecordingFailed | None = None
            for _ in range(100):  # 2 MiB of room, 200 KB a call (that no database compresses)
                ran_before = len(probe.calls)
                try:
                    run = await tracker.run(flow, {"blob": os.urandom(100_000).hex()}, CallInfo("cli"))
                except RecordingFailed as error:
                    if error.ran:  # ended, its end kept until there is room
                        ended_later.append(probe.calls[-1])
                        continue
                    refused = error
                    break
                returned[run.execution_id] = run.status
            assert refused is not None, "the disk never filled"
            print(
                f"\nfull disk, {kind.param}: {len(returned)} calls recorded, {len(ended_later)} ends kept, "
                f"then: {refused}"
            )
            assert re.search(r"database or disk is full|No space left on device", str(refused))
            assert len(probe.calls) == ran_before  # refused before any node
            assert returned, "nothing fitted before the disk filled"
            assert list_executions(db).total >= len(returned)  # reads go on
            filler.unlink()
            again = await tracker.run(flow, {"blob": "small"}, CallInfo("cli"))
            assert again.status == "fulfilled"
            for execution_id in ended_later:
                await eventually(lambda e=execution_id: get_execution(db, e).status == "fulfilled")
        for execution_id, status in returned.items():
            record_ = get_execution(db, execution_id)
            assert record_.status == status
            assert len(record_.steps[0].output) == 200_000  # the data is whole
        if kind.param == "sqlite":
            with db.connect() as connection:
                assert connection.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        db.dispose()
