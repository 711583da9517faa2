"""A process killed with SIGKILL mid-node: the next start marks its execution interrupted."""

from __future__ import annotations

import asyncio
import signal
import time

import httpx
from sqlalchemy import Engine

from flowdeck.settings import Settings
from flowdeck.store.reads import Filter, get_execution, list_executions
from flowdeck.times import SECOND_US, now_us
from flowdeck.tracking import Tracker
from tests.support.processes import flowdeck_env, start_flowdeck
from tests.support.server import served

SLOW = """
name: slow
nodes:
  - {id: warm_up, type: transform, config: {value: 1}}
  - {id: long_wait, type: delay, config: {seconds: 60}}
  - {id: never, type: transform, config: {value: 2}}
"""


def _start_a_runner(db: Engine, settings: Settings) -> int:
    """Start (and stop) a tracker, as any flowdeck process does; how many executions it recovered."""

    async def start() -> int:
        async with Tracker(db, settings, kind="test") as tracker:
            return tracker.recovered

    return asyncio.run(start())


def _wait_for_running_node(db: Engine, node_id: str, timeout_s: float = 30) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        page = list_executions(db, Filter(status="pending"))
        if page.items:
            record = get_execution(db, page.items[0].id)
            if any(step.node_id == node_id and step.status == "pending" for step in record.steps):
                return record.id
        time.sleep(0.05)
    raise AssertionError(f"no execution reached node {node_id!r}")


def _kill_a_run_in_long_wait(database_url: str, db: Engine) -> str:
    """SIGKILL a `flows run slow` process while its run waits in `long_wait`; the run's id."""
    victim = start_flowdeck("flows", "run", "slow", env=flowdeck_env(database_url))
    try:
        execution_id = _wait_for_running_node(db, "long_wait")
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
    finally:
        victim.kill()
    return execution_id


def test_sigkill_mid_node_then_restart_marks_it_interrupted(database_url: str, db: Engine, add_flow) -> None:
    add_flow(SLOW)
    execution_id = _kill_a_run_in_long_wait(database_url, db)
    assert get_execution(db, execution_id).status == "pending"

    # the next process to start recovers it
    assert _start_a_runner(db, Settings(database_url=database_url)) == 1
    record = get_execution(db, execution_id)
    assert record.status == "error"
    assert record.error.type == "interrupted"
    assert record.error.node_id == "long_wait"
    assert [(s.node_id, s.status) for s in record.steps] == [("warm_up", "fulfilled"), ("long_wait", "error")]
    assert record.ended_at is not None
    assert list_executions(db, Filter(status="pending")).total == 0

    # recovery happens once: a second start finds nothing to mark
    assert _start_a_runner(db, Settings(database_url=database_url)) == 0


def test_an_interrupted_end_is_the_last_moment_the_process_was_alive(
    database_url: str, db: Engine, add_flow
) -> None:
    """Recovered over a second after the kill, the end is still at or before the kill, not at the
    restart."""
    add_flow(SLOW)
    execution_id = _kill_a_run_in_long_wait(database_url, db)
    killed_at = now_us()
    time.sleep(1.2)
    recovered_at = now_us()
    assert _start_a_runner(db, Settings(database_url=database_url)) == 1
    record = get_execution(db, execution_id)
    assert record.error.type == "interrupted"
    long_wait = next(step for step in record.steps if step.node_id == "long_wait")
    assert long_wait.started_at <= record.ended_at <= killed_at < recovered_at - SECOND_US
    assert long_wait.ended_at == record.ended_at
    assert "known to be alive" in record.error.message
    with served(Settings(database_url=database_url)) as base:  # the details say the end is an estimate
        panel = httpx.get(f"{base}/executions/{execution_id}/panel").text
    assert 'data-testid="ended-estimate"' in panel


def test_a_stale_heartbeat_marks_a_runner_dead(database_url: str, db: Engine, add_flow) -> None:
    """A runner on another host can't be checked by process id: only its heartbeat tells."""
    add_flow(SLOW)
    victim = start_flowdeck("flows", "run", "slow", env=flowdeck_env(database_url))
    try:
        execution_id = _wait_for_running_node(db, "long_wait")
        victim.send_signal(signal.SIGSTOP)  # alive, but silent
        settings = Settings(database_url=database_url, stale_after_s=0.5)
        time.sleep(0.6)
        assert _start_a_runner(db, settings) == 1
        assert get_execution(db, execution_id).error.type == "interrupted"
    finally:
        victim.kill()
        victim.wait(10)
