"""The tracker: one per process that runs flows. It registers the process as a runner, recovers what
dead runners left pending, keeps a heartbeat (a thread, so that a busy event loop never looks dead),
owns the writer task, and runs flows with a recorder."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from sqlalchemy import Engine

from flowdeck.engine import (
    ExposedFlowDefinition,
    FlowDefinition,
    NullObserver,
    Observer,
    Observers,
    Parent,
    PreparedFlow,
    Run,
    Services,
    run_flow,
)
from flowdeck.engine.ports import NO_SERVICES
from flowdeck.errors import CannotRerun
from flowdeck.events import EventHub
from flowdeck.ids import new_id
from flowdeck.settings import Settings
from flowdeck.states import Transport
from flowdeck.store.flows import FlowRecord, definition_at, get_flow
from flowdeck.store.reads import get_execution
from flowdeck.store.runners import heartbeat, recover, register_runner, unregister_runner
from flowdeck.tracking import tracing
from flowdeck.tracking.metrics import Metrics
from flowdeck.tracking.recorder import CallInfo, Recorder
from flowdeck.tracking.secrets import holds_secrets
from flowdeck.tracking.writer import Writer

log = logging.getLogger("flowdeck.tracking")


class Tracker:
    """``hub`` is told what is recorded (a serving process's runtime gives its own; by default a hub
    nobody watches, whose events still reach every server through PostgreSQL); ``kind`` names the
    command that runs flows."""

    def __init__(self, db: Engine, settings: Settings, *, kind: str, hub: EventHub | None = None) -> None:
        self.db = db
        self.settings = settings
        self.hub = hub or EventHub(db)
        self.kind = kind
        self.runner_id: str | None = None
        self._writer: Writer | None = None
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._prepared: dict[tuple[str, int], PreparedFlow] = {}
        self.recovered = 0
        # what the flows it runs may use: child flows and MCP tools (the runtime gives them)
        self.services: Services = NO_SERVICES
        self.metrics = Metrics(lambda: 0 if self._writer is None else self._writer.waiting)
        self._background: set[asyncio.Task[Run]] = set()  # re-runs nobody waits for
        # set up now, before any call: the MCP SDK's span of the first call must be a real one too
        self._traces = tracing.tracer()

    async def start(self) -> Tracker:
        """Register this process, recover dead runners' executions, start writing and heartbeating.
        The tracker then belongs to the running event loop."""
        self.runner_id = register_runner(self.db, self.kind)
        self.recovered = recover(self.db, stale_after_s=self.settings.stale_after_s, exclude=self.runner_id)
        self._writer = Writer(self.db, self.hub)
        await self._writer.start()
        self._heartbeat = threading.Thread(target=self._beat, name="flowdeck-heartbeat", daemon=True)
        self._heartbeat.start()
        return self

    async def close(self) -> None:
        """End the re-runs still running (recorded as cancelled), write what is queued, stop
        heartbeating, and unregister. What the database refuses now is left pending, for recovery to
        mark ``interrupted``."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._writer is not None:
            await self._writer.close()
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        if self.runner_id is not None:
            try:
                unregister_runner(self.db, self.runner_id)
            except Exception as exc:  # the database is away: the runner's heartbeat goes stale instead
                log.warning("could not unregister runner %s: %s", self.runner_id, exc)
            self.runner_id = None

    async def __aenter__(self) -> Tracker:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def prepare(self, flow: FlowRecord) -> PreparedFlow:
        """The flow ready to run, compiled once per revision."""
        key = (flow.id, flow.revision)
        prepared = self._prepared.get(key)
        if prepared is None:
            kind = FlowDefinition if flow.exposed is None else ExposedFlowDefinition
            definition = kind.model_validate(flow.definition)
            prepared = self._prepared[key] = PreparedFlow(definition, flow_id=flow.id, revision=flow.revision)
        return prepared

    def recorder(self, call: CallInfo, trace_id: str | None = None) -> Observer:
        if self._writer is None or self.runner_id is None:
            raise RuntimeError("the tracker is not started")
        return Recorder(
            self._writer, self.metrics, self.runner_id, call, self.settings.max_value_bytes, trace_id
        )

    async def run(
        self,
        flow: PreparedFlow,
        params: Any,
        call: CallInfo,
        *,
        watcher: Observer | None = None,
        execution_id: str | None = None,
        parent: Parent | None = None,
        depth: int = 1,
        deadline: float | None = None,
        cancelled_by: str | None = None,
    ) -> Run:
        """Run a flow, recorded; ``watcher`` is told the same as the recorder, after it (progress
        reporting); a child flow's run has its ``parent``, ``depth`` and its parent's ``deadline``;
        ``cancelled_by`` says who may cancel it (``the client``). Raises
        :class:`~flowdeck.errors.RecordingFailed` when the execution can't be recorded."""
        execution_id = execution_id or new_id()
        options: dict[str, Any] = {
            "execution_id": execution_id,
            "default_timeout_s": self.settings.execution_timeout_s,
            "services": self.services,
            "parent": parent,
            "depth": depth,
            "deadline": deadline,
            "cancelled_by": cancelled_by,
        }
        traces = self._traces
        if traces is None:
            recorder = self.recorder(call)
            return await run_flow(flow, params, _told(recorder, watcher), **options)
        with tracing.execution_span(traces, flow.name, execution_id) as span:
            recorder = self.recorder(call, tracing.trace_id(span))
            run = await run_flow(flow, params, _told(recorder, tracing.NodeSpans(traces), watcher), **options)
            tracing.end_execution(span, run)
            return run

    def plan_rerun(self, execution_id: str) -> tuple[PreparedFlow, Any, CallInfo]:
        """What running an execution again takes: its flow as it is now, the arguments it was sent,
        and who calls. :class:`~flowdeck.errors.CannotRerun` when the flow is deleted or the
        arguments were not stored whole (secrets masked, or cut for size)."""
        record = get_execution(self.db, execution_id)
        flow = get_flow(self.db, record.flow_id)
        if flow.deleted:
            raise CannotRerun(f"the flow {flow.name!r} was deleted: its executions stay, but it can't run")
        if record.params_truncated:
            raise CannotRerun("its arguments were too big to be stored whole, so they can't be sent again")
        then = definition_at(self.db, flow.id, record.flow_revision) or flow.definition
        if holds_secrets(record.initial_params, then.get("input_schema")):
            raise CannotRerun(
                "its arguments were stored redacted (secret values are never kept): call the flow again"
            )
        return self.prepare(flow), record.initial_params, CallInfo(Transport.RERUN, rerun_of=record.id)

    async def start_rerun(self, execution_id: str) -> str:
        """Run an execution again in the background (see :meth:`plan_rerun`); returns the new
        execution's id once its ``pending`` row is written."""
        flow, params, call = self.plan_rerun(execution_id)
        started = _Started()
        new_execution_id = new_id()
        task = asyncio.get_running_loop().create_task(
            self.run(flow, params, call, watcher=started, execution_id=new_execution_id)
        )
        self._background.add(task)
        task.add_done_callback(_forget(self._background))
        await asyncio.wait([started.recorded, task], return_when=asyncio.FIRST_COMPLETED)
        if not started.recorded.done():
            task.result()  # it ended before it was recorded: raises why (RecordingFailed)
        return new_execution_id

    def _beat(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_s):
            try:
                heartbeat(self.db, self.runner_id)  # type: ignore[arg-type]
                self.recovered += recover(
                    self.db, stale_after_s=self.settings.stale_after_s, exclude=self.runner_id
                )
            except Exception as exc:  # the database may be away for a while: try again next beat
                log.warning("heartbeat failed: %s", exc)


def _told(*observers: Observer | None) -> Observer:
    """The observers given, in order (the recorder first); one alone as it is."""
    present = [observer for observer in observers if observer is not None]
    return present[0] if len(present) == 1 else Observers(*present)


class _Started(NullObserver):
    """Told after the recorder: ``recorded`` is done once the execution's ``pending`` row is written."""

    def __init__(self) -> None:
        self.recorded: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def execution_started(self, run: Run) -> None:
        self.recorded.set_result(None)


def _forget(tasks: set[asyncio.Task[Run]]) -> Any:
    """A done-callback: drop the task, and log why it failed, if it did (nobody awaits it)."""

    def done(task: asyncio.Task[Run]) -> None:
        tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a re-run failed: %s", task.exception())

    return done
