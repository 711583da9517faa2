"""The engine's observer that records an execution, keeping the guarantees users rely on:

1. the ``pending`` row is committed before the first node runs; if it can't be, the call fails;
2. each node's step is written as it starts and as it ends (off the hot path, batched);
3. the final state is committed before the result goes back to the caller; a cancelled call's
   final state is written even though the cancellation does not wait for it.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass
from typing import Any

from flowdeck.engine import PreparedFlow, Run, Step
from flowdeck.store.executions import encode_value, params_preview
from flowdeck.tracking.events import Event, event
from flowdeck.tracking.secrets import has_secrets, mask
from flowdeck.tracking.writer import EXECUTION, FINISH, STEP, Writer


class RecordingError(Exception):
    """The execution could not be recorded. ``ran`` is False when it failed at the start: then no
    node has run."""

    def __init__(self, message: str, *, ran: bool) -> None:
        super().__init__(message)
        self.ran = ran


@dataclass(frozen=True, slots=True)
class CallInfo:
    """Who called: recorded with the execution."""

    transport: str  # http, stdio, cli
    client_name: str | None = None
    client_version: str | None = None


_SECRETS: weakref.WeakKeyDictionary[PreparedFlow, bool] = weakref.WeakKeyDictionary()


def _has_secrets(flow: PreparedFlow) -> bool:
    """Looked up once per prepared flow: most flows have no secret argument and skip masking."""
    found = _SECRETS.get(flow)
    if found is None:
        found = _SECRETS[flow] = has_secrets(flow.definition.input_schema)
    return found


def _us(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1_000_000)


class Recorder:
    """Records one execution; made per call by the :class:`~flowdeck.tracking.Tracker`."""

    __slots__ = ("_call", "_max_bytes", "_runner_id", "_summary", "_writer")

    def __init__(self, writer: Writer, runner_id: str, call: CallInfo, max_value_bytes: int) -> None:
        self._writer = writer
        self._runner_id = runner_id
        self._call = call
        self._max_bytes = max_value_bytes
        self._summary: dict[str, Any] = {}

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
        row = {
            "id": run.execution_id,
            "flow_id": run.flow.flow_id,
            "flow_name": run.flow.name,
            "flow_revision": run.flow.revision,
            "status": "pending",
            "started_at": _us(run.started_at),
            "params_preview": params_preview(initial),
            "initial_params": params,
            "input": arguments,
            "params_truncated": params_cut,
            "steps_total": len(run.flow.nodes),
            "client_name": self._call.client_name,
            "client_version": self._call.client_version,
            "transport": self._call.transport,
            "runner_id": self._runner_id,
        }
        self._summary = {
            "id": run.execution_id,
            "flow_id": run.flow.flow_id,
            "flow_name": run.flow.name,
            "status": "pending",
            "started_at": row["started_at"],
            "ended_at": None,
            "params_preview": row["params_preview"],
            "steps_done": 0,
            "steps_total": row["steps_total"],
            "error_type": None,
            "error_node_id": None,
        }
        try:
            await self._writer.commit(EXECUTION, row, *self._events())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise RecordingError(
                f"cannot record the execution, so the flow was not run: {_reason(exc)}", ran=False
            ) from exc

    def step_started(self, run: Run, step: Step) -> None:
        row = self._step_row(run, step)
        self._writer.write(STEP, row, *self._events(row))

    def step_finished(self, run: Run, step: Step) -> None:
        row = self._step_row(run, step)
        self._summary["steps_done"] += 1
        self._writer.write(STEP, row, *self._events(row, with_summary=True))

    def _events(self, step: dict[str, Any] | None = None, *, with_summary: bool = False) -> list[Event]:
        """The events of a write: the step's (its output is read, not pushed), the summary's. Built
        only when somebody may watch."""
        hub = self._writer.hub
        if hub is None:
            return []
        if not hub.wanted:
            hub.skipped()
            return []
        summary = self._summary
        flow_id, execution_id = summary["flow_id"], summary["id"]
        events: list[Event] = []
        if step is not None:
            data = {key: value for key, value in step.items() if key != "output"}
            events.append(event("step", flow_id, execution_id, data))
        if step is None or with_summary:
            events.append(event("execution", flow_id, execution_id, dict(summary)))
        return events

    def _step_row(self, run: Run, step: Step) -> dict[str, Any]:
        output, cut = (
            (None, False) if step.status != "fulfilled" else encode_value(step.output, self._max_bytes)
        )
        return {
            "execution_id": run.execution_id,
            "idx": step.index,
            "node_id": step.node_id,
            "node_type": step.node_type,
            "status": step.status,
            "started_at": _us(step.started_at),
            "ended_at": _us(step.ended_at),
            "output": output,
            "output_truncated": cut,
            "error": step.error,
        }

    async def execution_finished(self, run: Run) -> None:
        output, cut = None, False
        if run.flow.output is not None and run.status == "fulfilled":
            output, cut = encode_value(run.output, self._max_bytes)
        error = run.error
        row = {
            "execution_id": run.execution_id,
            "status": run.status,
            "ended_at": _us(run.ended_at),
            "output": output,
            "output_truncated": cut,
            "error_type": error.type if error else None,
            "error_message": error.message if error else None,
            "error_node_id": error.node_id if error else None,
        }
        self._summary.update(
            status=run.status,
            ended_at=row["ended_at"],
            error_type=row["error_type"],
            error_node_id=row["error_node_id"],
        )
        try:
            await self._writer.commit(FINISH, row, *self._events())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise RecordingError(
                f"the execution ran but its end is not recorded yet ({_reason(exc)}): it is kept and"
                " written when the database is back",
                ran=True,
            ) from exc


def _reason(exc: Exception) -> str:
    original = getattr(exc, "orig", None) or exc
    return " ".join(str(original).split()) or type(original).__name__
