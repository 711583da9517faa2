"""The engine's observer that records an execution, keeping the guarantees users rely on:

1. the ``pending`` row is committed before the first node runs; if it can't be, the call fails;
2. each node's step is written as it starts and as it ends (off the hot path, batched);
3. the final state is committed before the result goes back to the caller; a cancelled call's
   final state is written even though the cancellation does not wait for it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import weakref
from dataclasses import dataclass
from typing import Any

from flowdeck.engine import ItemRun, PreparedFlow, Run, StepRun
from flowdeck.errors import RecordingFailed
from flowdeck.events import Event
from flowdeck.records import ExecutionSummary, StepChange
from flowdeck.states import Status, StepStatus, Transport
from flowdeck.store.values import encode_value, param_pairs, params_preview
from flowdeck.store.writes import ExecutionRow, FinishRow, ParamRow, StepRow
from flowdeck.times import duration_ms
from flowdeck.tracking.metrics import Metrics
from flowdeck.tracking.secrets import has_secrets, mask
from flowdeck.tracking.writer import Writer


@dataclass(frozen=True, slots=True)
class CallInfo:
    """Who called: recorded with the execution."""

    transport: Transport
    client_name: str | None = None
    client_version: str | None = None
    rerun_of: str | None = None  # the execution this one runs again


# a running step's tries, items and children are written at most this often (and when it ends)
PROGRESS_WRITE_S = 0.25
# what a step's live event takes from its row (its duration is computed)
STEP_STATE_FIELDS = tuple(f.name for f in dataclasses.fields(StepChange) if f.name != "duration_ms")

_SECRETS: weakref.WeakKeyDictionary[PreparedFlow, bool] = weakref.WeakKeyDictionary()


def _has_secrets(flow: PreparedFlow) -> bool:
    """Looked up once per prepared flow: most flows have no secret argument and skip masking."""
    found = _SECRETS.get(flow)
    if found is None:
        found = _SECRETS[flow] = has_secrets(flow.definition.input_schema)
    return found


class Recorder:
    """Records one execution; made per call by the :class:`~flowdeck.tracking.Tracker`."""

    __slots__ = (
        "_call",
        "_changed_from",
        "_max_bytes",
        "_metrics",
        "_preview",
        "_progress_at",
        "_run",
        "_runner_id",
        "_steps_done",
        "_trace_id",
        "_writer",
    )

    def __init__(
        self,
        writer: Writer,
        metrics: Metrics,
        runner_id: str,
        call: CallInfo,
        max_value_bytes: int,
        trace_id: str | None = None,
    ) -> None:
        self._writer = writer
        self._trace_id = trace_id
        self._metrics = metrics
        self._runner_id = runner_id
        self._call = call
        self._max_bytes = max_value_bytes
        self._preview = ""
        self._steps_done = 0
        self._progress_at = 0.0
        self._run: Run | None = None
        self._changed_from: int | None = None  # the first step changed since the last batch

    async def execution_started(self, run: Run) -> None:
        initial, given = run.initial_params, run.input
        if _has_secrets(run.flow):
            schema = run.flow.definition.input_schema
            initial, given = mask(initial, schema), None if given is None else mask(given, schema)
        params, params_cut = encode_value(initial, self._max_bytes)
        arguments = None
        if given is not None and given != initial:
            arguments, input_cut = encode_value(given, self._max_bytes)
            params_cut = params_cut or input_cut
        self._preview = params_preview(initial)
        row: ExecutionRow = {
            "id": run.execution_id,
            "flow_id": run.flow.flow_id,
            "flow_name": run.flow.name,
            "flow_revision": run.flow.revision,
            "status": Status.PENDING,
            "started_at": run.started_at,
            "params_preview": self._preview,
            "initial_params": params,
            "input": arguments,
            "params_truncated": params_cut,
            "steps_total": len(run.flow.nodes),
            "client_name": self._call.client_name,
            "client_version": self._call.client_version,
            "transport": self._call.transport,
            "runner_id": self._runner_id,
            "parent_execution_id": run.parent.execution_id if run.parent else None,
            "parent_node_id": run.parent.node_id if run.parent else None,
            "rerun_of": self._call.rerun_of,
            "trace_id": self._trace_id,
        }
        params: list[ParamRow] = [
            {"execution_id": run.execution_id, "flow_id": run.flow.flow_id, "key": key, "value": value}
            for key, value in param_pairs(initial)
        ]
        self._metrics.started(run)
        try:
            await self._writer.start_execution(row, params, *self._summary_events(run))
        except asyncio.CancelledError:
            raise  # the engine still ends it, and the end is counted
        except Exception as exc:
            self._metrics.refused(run)
            raise RecordingFailed(
                f"cannot record the execution, so the flow was not run: {_reason(exc)}", ran=False
            ) from exc

    def step_started(self, run: Run, step: StepRun) -> None:
        self._step_changed(run, step)

    def step_progress(self, run: Run, step: StepRun, message: str | None) -> None:
        """A running step's tries, items or child, written now and then while it runs."""
        now = time.monotonic()
        if now - self._progress_at < PROGRESS_WRITE_S:
            return
        self._progress_at = now
        self._step_changed(run, step)

    def step_finished(self, run: Run, step: StepRun) -> None:
        self._steps_done += 1
        self._step_changed(run, step, ended=True)

    def _step_changed(self, run: Run, step: StepRun, *, ended: bool = False) -> None:
        """Watched: the step's row now, with its event (and the execution's, once it ended)."""
        if not self._writer.events_wanted():
            self._changed(run, step)
            return
        row = self._step_row(run, step)
        events = [self._step_event(run, row)]
        if ended:
            events.append(self._summary_event(run))
        self._writer.write_step(row, *events)

    def _changed(self, run: Run, step: StepRun) -> None:
        """Nobody watches: the step's row is made when the next batch is written (by then most
        steps have ended, and one row says both their start and their end)."""
        if self._changed_from is None:
            self._run, self._changed_from = run, step.index
            self._writer.write_steps_later(self)
        elif step.index < self._changed_from:
            self._changed_from = step.index

    def step_rows(self) -> list[StepRow]:
        """The rows of the steps changed since the last batch: the writer asks when it writes one."""
        run, first = self._run, self._changed_from
        self._changed_from = None
        if run is None or first is None:
            return []
        return [self._step_row(run, step) for step in run.steps[first:]]

    async def execution_finished(self, run: Run) -> None:
        self._metrics.ended(run)  # counted once, here, however often the writer must try to record it
        output, cut = None, False
        if run.flow.output is not None and run.status == Status.FULFILLED:
            output, cut = encode_value(run.output, self._max_bytes)
        error = run.error
        row: FinishRow = {
            "execution_id": run.execution_id,
            "status": run.status,
            "ended_at": run.ended_at,  # type: ignore[typeddict-item]
            "output": output,
            "output_truncated": cut,
            "error_type": error.type if error else None,
            "error_message": error.message if error else None,
            "error_node_id": error.node_id if error else None,
        }
        try:
            await self._writer.finish_execution(row, *self._summary_events(run))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise RecordingFailed(
                f"the execution ran but its end is not recorded yet ({_reason(exc)}): it is kept and"
                " written when the database is back",
                ran=True,
            ) from exc

    def _step_row(self, run: Run, step: StepRun) -> StepRow:
        output, cut = None, False
        if step.output is not None or step.status == StepStatus.FULFILLED:
            output, cut = encode_value(step.output, self._max_bytes)
        return {
            "execution_id": run.execution_id,
            "index": step.index,
            "node_id": step.node_id,
            "node_type": step.node_type,
            "status": step.status,
            "started_at": step.started_at,
            "ended_at": step.ended_at,
            "output": output,
            "output_truncated": cut,
            "error": step.error,
            "attempts": _json(step.attempts) if step.attempts and len(step.attempts) > 1 else None,
            "items": None if step.items is None else _json([_item(item) for item in step.items]),
            "child_execution_id": step.child_execution_id,
            "remote": None if step.remote is None else _json(step.remote),
        }

    # Events are built only when somebody may watch: they cost a few microseconds each.

    def _summary_events(self, run: Run) -> list[Event]:
        return [self._summary_event(run)] if self._writer.events_wanted() else []

    def _summary_event(self, run: Run) -> Event:
        error = run.error
        summary = ExecutionSummary(
            id=run.execution_id,
            flow_id=run.flow.flow_id,
            flow_name=run.flow.name,
            status=run.status,
            started_at=run.started_at,
            ended_at=run.ended_at,
            duration_ms=duration_ms(run.started_at, run.ended_at),
            params_preview=self._preview,
            steps_done=self._steps_done,
            steps_total=len(run.flow.nodes),
            error_type=error.type if error else None,
            error_node_id=error.node_id if error else None,
            parent_execution_id=run.parent.execution_id if run.parent else None,
            rerun_of=self._call.rerun_of,
        )
        return Event.of(summary)

    def _step_event(self, run: Run, row: StepRow) -> Event:
        """The step as its row says it, but its output (read, not pushed)."""
        state = {name: row[name] for name in STEP_STATE_FIELDS}  # type: ignore[literal-required]
        change = StepChange(**state, duration_ms=duration_ms(row["started_at"], row["ended_at"]))
        return Event.of_step(run.flow.flow_id, change)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_fields)


def _fields(value: Any) -> Any:
    """A try or a remote call as stored: its fields."""
    return {name: getattr(value, name) for name in value.__slots__}


def _item(item: ItemRun) -> dict[str, Any]:
    return {
        "index": item.index,
        "status": item.status,
        "started_at": item.started_at,
        "ended_at": item.ended_at,
        "error": item.error,
        "child_execution_id": item.child_execution_id,
    }


def _reason(exc: Exception) -> str:
    original = getattr(exc, "orig", None) or exc
    return " ".join(str(original).split()) or type(original).__name__
