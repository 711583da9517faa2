"""Runs a prepared flow node by node and tells an observer what happens.

The engine knows nothing of storage: the observer it is given decides what is recorded. The
observer's ``execution_started`` must succeed before any node runs; its failure ends the call.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Protocol

from flowdeck.engine.nodes import NodeContext, NodeError
from flowdeck.engine.prepare import PreparedFlow, PreparedNode
from flowdeck.engine.templates import TemplateRenderError, render_value
from flowdeck.records import ExecutionError
from flowdeck.states import ErrorType, Status, StepStatus, can_move
from flowdeck.times import iso, now_us

MAX_DEPTH = 64  # arguments nested deeper are refused: no client needs more, and recursion has limits


@dataclass(slots=True)
class StepRun:
    """One node's run, as the observer is told about it (times in microseconds)."""

    index: int
    node_id: str
    node_type: str
    status: StepStatus
    started_at: int
    ended_at: int | None = None
    output: Any = None
    error: str | None = None


@dataclass(slots=True)
class Run:
    """One execution of a flow: what the observer is told at start, and what it ends with."""

    execution_id: str
    flow: PreparedFlow
    initial_params: Any
    input: Any
    started_at: int
    status: Status = Status.PENDING
    ended_at: int | None = None
    output: Any = None
    error: ExecutionError | None = None
    steps: list[StepRun] = field(default_factory=list)

    def end(self, status: Status, *, output: Any = None, error: ExecutionError | None = None) -> None:
        if not can_move(self.status, status):
            raise RuntimeError(f"execution {self.execution_id} is already {self.status}")
        self.status, self.ended_at, self.output, self.error = status, now_us(), output, error


class Observer(Protocol):
    """What the runner tells. ``execution_started`` and ``execution_finished`` are awaited; the step
    calls are not, so that an observer can record steps off the hot path."""

    async def execution_started(self, run: Run) -> None: ...

    def step_started(self, run: Run, step: StepRun) -> None: ...

    def step_finished(self, run: Run, step: StepRun) -> None: ...

    async def execution_finished(self, run: Run) -> None: ...


class NullObserver:
    """Records nothing: the baseline the benchmarks compare tracking against, never a user setting."""

    async def execution_started(self, run: Run) -> None:
        return None

    def step_started(self, run: Run, step: StepRun) -> None:
        return None

    def step_finished(self, run: Run, step: StepRun) -> None:
        return None

    async def execution_finished(self, run: Run) -> None:
        return None


class Observers:
    """Several observers told the same things in order: a recorder and a progress reporter, say."""

    def __init__(self, *observers: Observer) -> None:
        self._observers = observers

    async def execution_started(self, run: Run) -> None:
        for observer in self._observers:
            await observer.execution_started(run)

    def step_started(self, run: Run, step: StepRun) -> None:
        for observer in self._observers:
            observer.step_started(run, step)

    def step_finished(self, run: Run, step: StepRun) -> None:
        for observer in self._observers:
            observer.step_finished(run, step)

    async def execution_finished(self, run: Run) -> None:
        for observer in self._observers:
            await observer.execution_finished(run)


def _problems(errors: Any) -> list[str]:
    problems = []
    for error in sorted(errors, key=lambda e: list(e.absolute_path)):
        place = "/".join(str(p) for p in error.absolute_path)
        problems.append(f"{place}: {error.message}" if place else error.message)
    return problems


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether JSON data nests deeper than ``limit``, found without recursion."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


async def run_flow(
    flow: PreparedFlow,
    params: Any,
    observer: Observer,
    *,
    execution_id: str,
    default_timeout_s: float = 300.0,
) -> Run:
    """Run ``flow`` with ``params`` and return the finished :class:`Run`.

    Cancellation of the calling task is recorded as ``cancelled`` and then re-raised.
    """
    started = now_us()
    if _deeper_than(params, MAX_DEPTH):  # refused before anything recursive looks at it
        arguments, problems = None, [f"arguments nested deeper than {MAX_DEPTH} levels"]
    else:
        arguments = _copy_json(params)
        problems = _problems(flow.validator.iter_errors(arguments))
    run = Run(execution_id, flow, params, None if problems else arguments, started)
    try:
        await observer.execution_started(run)
    except asyncio.CancelledError:
        # cancelled while the start was being recorded: the record may be written all the same, so
        # it gets its end too, rather than stay pending while this process lives
        await _fail(run, observer, ErrorType.CANCELLED, "cancelled")
        raise
    if problems:
        return await _fail(
            run, observer, ErrorType.INVALID_PARAMS, "invalid arguments: " + "; ".join(problems)
        )

    timeout_s = flow.timeout_s or default_timeout_s
    context = {
        "input": arguments,
        "nodes": {},
        "execution": {"id": execution_id, "flow": flow.name, "started_at": iso(started)},
    }
    try:
        async with asyncio.timeout(timeout_s):
            error, output = await _run_nodes(run, observer, context)
    except TimeoutError:
        step = _interrupt(run, observer, f"timed out after {timeout_s:g} s")
        error = ExecutionError(
            type=ErrorType.TIMEOUT, message=f"timed out after {timeout_s:g} s", node_id=step
        )
        output = None
    except asyncio.CancelledError:
        step = _interrupt(run, observer, "cancelled")
        await _fail(run, observer, ErrorType.CANCELLED, "cancelled", step)
        raise
    if error is not None:
        run.end(Status.ERROR, error=error)
    else:
        run.end(Status.FULFILLED, output=output)
    await observer.execution_finished(run)
    return run


async def _run_nodes(
    run: Run, observer: Observer, context: dict[str, Any]
) -> tuple[ExecutionError | None, Any]:
    """The nodes in order, then the output template: the execution's error, or its output."""
    flow, outputs = run.flow, context["nodes"]
    last_output = None
    for index, node in enumerate(flow.nodes):
        step = StepRun(index, node.spec_id, node.type_name, StepStatus.PENDING, now_us())
        run.steps.append(step)
        if node.when is not None and not _truthy(node, context, step):
            if step.status == StepStatus.PENDING:
                step.status, step.ended_at = StepStatus.SKIPPED, step.started_at
            observer.step_finished(run, step)
            if step.status == StepStatus.ERROR:
                return _node_error(step), None
            continue
        observer.step_started(run, step)
        try:
            config = node.static_config or node.node_type.parse_config(render_value(node.config, context))
            output = await node.node_type.run(config, NodeContext(run.execution_id, flow.name, node.spec_id))
        except (NodeError, TemplateRenderError) as exc:
            step.error = str(exc)
        except Exception as exc:  # a node is user or plugin code: its failure is the node's error
            step.error = f"{type(exc).__name__}: {exc}"
        step.ended_at = now_us()
        if step.error is not None:
            step.status = StepStatus.ERROR
            observer.step_finished(run, step)
            return _node_error(step), None
        step.status, step.output = StepStatus.FULFILLED, output
        outputs[node.spec_id] = last_output = output
        observer.step_finished(run, step)
    if flow.output is not None:
        try:
            return None, flow.output.render(context)
        except TemplateRenderError as exc:
            return ExecutionError(type=ErrorType.NODE_ERROR, message=f"output: {exc}", node_id=None), None
    return None, last_output


def _node_error(step: StepRun) -> ExecutionError:
    return ExecutionError(type=ErrorType.NODE_ERROR, message=step.error or "failed", node_id=step.node_id)


def _truthy(node: PreparedNode, context: dict[str, Any], step: StepRun) -> bool:
    """Evaluate ``when``; a failing condition marks the step as the node's error."""
    try:
        value = node.when.render(context)  # type: ignore[union-attr]
    except TemplateRenderError as exc:
        step.status, step.ended_at, step.error = StepStatus.ERROR, now_us(), f"when: {exc}"
        return False
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0", "none", "null", "no")
    return bool(value)


def _interrupt(run: Run, observer: Observer, message: str) -> str | None:
    """End the running step, if one is, with ``message``; return its node id."""
    step = run.steps[-1] if run.steps else None
    if step is None or step.status != StepStatus.PENDING:
        return None
    step.status, step.ended_at, step.error = StepStatus.ERROR, now_us(), message
    observer.step_finished(run, step)
    return step.node_id


async def _fail(
    run: Run, observer: Observer, kind: ErrorType, message: str, node_id: str | None = None
) -> Run:
    run.end(Status.ERROR, error=ExecutionError(type=kind, message=message, node_id=node_id))
    await observer.execution_finished(run)
    return run


def _copy_json(value: Any) -> Any:
    """A private copy of the arguments, so that filling defaults never changes what the client sent."""
    if isinstance(value, dict):
        return {key: _copy_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy_json(item) for item in value]
    return value
