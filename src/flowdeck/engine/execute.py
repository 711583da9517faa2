"""Runs a prepared flow node by node and tells an observer what happens.

The engine knows nothing of storage: the observer it is given decides what is recorded. The
observer's ``execution_started`` must succeed before any node runs; its failure ends the call.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from flowdeck.engine.nodes import NodeContext, NodeError, Notes
from flowdeck.engine.ports import NO_SERVICES, Parent, Services, ToolReply
from flowdeck.engine.prepare import PreparedFlow, PreparedNode
from flowdeck.engine.templates import TemplateRenderError, render_value
from flowdeck.records import ExecutionError
from flowdeck.states import ErrorType, Status, StepStatus, can_move
from flowdeck.times import iso, now_us

MAX_DEPTH = 64  # arguments nested deeper are refused: no client needs more, and recursion has limits
PROGRESS_EVERY_S = 0.05  # a map tells how far it got at most this often (and when it is done)


@dataclass(slots=True)
class Attempt:
    """One try of a node that may be tried again."""

    started_at: int
    ended_at: int
    status: StepStatus
    error: str | None = None


@dataclass(slots=True)
class ItemRun:
    """One item of a ``map``: ``skipped`` until it starts."""

    index: int
    status: StepStatus = StepStatus.SKIPPED
    started_at: int | None = None
    ended_at: int | None = None
    error: str | None = None
    child_execution_id: str | None = None
    remote: dict[str, Any] | None = None
    reply: ToolReply | None = None


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
    attempts: list[Attempt] | None = None  # every try, when it may be tried more than once
    items: list[ItemRun] | None = None  # a map's items, in order
    child_execution_id: str | None = None
    remote: dict[str, Any] | None = None
    reply: ToolReply | None = None  # an mcp node's reply as it came (not recorded: its output is)


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
    parent: Parent | None = None
    depth: int = 1
    services: Services = NO_SERVICES
    deadline: float | None = None  # time.monotonic() by which it must end

    def end(self, status: Status, *, output: Any = None, error: ExecutionError | None = None) -> None:
        if not can_move(self.status, status):
            raise RuntimeError(f"execution {self.execution_id} is already {self.status}")
        self.status, self.ended_at, self.output, self.error = status, now_us(), output, error


class NodeFailed(Exception):
    """A node's last try failed; ``output`` is what it gives the flow if it may continue."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.output = {"error": {"type": ErrorType.NODE_ERROR, "message": message}}


class Observer(Protocol):
    """What the runner tells. ``execution_started`` and ``execution_finished`` are awaited; the step
    calls are not, so that an observer can record steps off the hot path. ``step_progress`` says a
    running step moved on: a try, a map's item, a child started (``message`` for the caller, or None
    when there is nothing to say)."""

    async def execution_started(self, run: Run) -> None: ...

    def step_started(self, run: Run, step: StepRun) -> None: ...

    def step_progress(self, run: Run, step: StepRun, message: str | None) -> None: ...

    def step_finished(self, run: Run, step: StepRun) -> None: ...

    async def execution_finished(self, run: Run) -> None: ...


class NullObserver:
    """Records nothing: the baseline the benchmarks compare tracking against, never a user setting."""

    async def execution_started(self, run: Run) -> None:
        return None

    def step_started(self, run: Run, step: StepRun) -> None:
        return None

    def step_progress(self, run: Run, step: StepRun, message: str | None) -> None:
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

    def step_progress(self, run: Run, step: StepRun, message: str | None) -> None:
        for observer in self._observers:
            observer.step_progress(run, step, message)

    def step_finished(self, run: Run, step: StepRun) -> None:
        for observer in self._observers:
            observer.step_finished(run, step)

    async def execution_finished(self, run: Run) -> None:
        for observer in self._observers:
            await observer.execution_finished(run)


def _problems(flow: PreparedFlow, arguments: Any) -> list[str]:
    """What is wrong with the arguments, by the flow's schema. A schema that can't be applied (a
    served remote tool's, say: a pattern that is not a regex, a $ref to nowhere) is a problem of
    the call too, so that the call is still recorded, with the reason."""
    try:
        errors = sorted(flow.validator.iter_errors(arguments), key=lambda e: list(e.absolute_path))
    except Exception as exc:
        return [f"the input schema can't check them: {' '.join(str(exc).split())[:300]}"]
    problems = []
    for error in errors:
        place = "/".join(str(p) for p in error.absolute_path)
        problems.append(f"{place}: {error.message}" if place else error.message)
    return problems


def _misshapen(value: Any, limit: int) -> str | None:
    """What makes JSON data unfit to run or to store, found in one walk without recursion: nesting
    deeper than ``limit``, or a string (or key) with a lone surrogate, which JSON can escape
    (``"\\ud800"``) but which is not text, so that nothing can encode it."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if not item.isascii() and not _is_text(item):
                return "not text"
        elif isinstance(item, dict | list):
            if depth > limit:
                return "too deep"
            if isinstance(item, dict):
                if not all(key.isascii() or _is_text(key) for key in item):
                    return "not text"
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)
    return None


def _is_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _as_text(value: Any) -> Any:
    """JSON data with each lone surrogate replaced by U+FFFD (only called on data found holding one,
    whose nesting is already known to be bounded)."""
    if isinstance(value, str):
        return (
            value if _is_text(value) else value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        )
    if isinstance(value, dict):
        return {_as_text(key): _as_text(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_text(item) for item in value]
    return value


def _not_text_at(value: Any, place: str = "") -> str | None:
    """Where the first string that is not text is (a key path, as the record shows it)."""
    if isinstance(value, str):
        return None if _is_text(value) else place or "(the arguments)"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        where = f"{place}/{_as_text(key)}" if place else str(_as_text(key))
        if isinstance(key, str) and not _is_text(key):
            return where
        found = _not_text_at(item, where)
        if found is not None:
            return found
    return None


async def run_flow(
    flow: PreparedFlow,
    params: Any,
    observer: Observer,
    *,
    execution_id: str,
    default_timeout_s: float = 300.0,
    services: Services = NO_SERVICES,
    parent: Parent | None = None,
    depth: int = 1,
    deadline: float | None = None,
    cancelled_by: str | None = None,
) -> Run:
    """Run ``flow`` with ``params`` and return the finished :class:`Run`. A child flow's run has its
    ``parent``, its ``depth`` among nested flows and its parent's ``deadline``: it gets no more time
    than its parent has left.

    Cancellation of the calling task is recorded as ``cancelled`` (saying who cancelled:
    ``cancelled_by`` for a top run, its parent for a child) and then re-raised.
    """
    started = now_us()
    misshapen = _misshapen(params, MAX_DEPTH)  # refused before anything recursive looks at it
    if misshapen == "too deep":
        arguments, problems = None, [f"arguments nested deeper than {MAX_DEPTH} levels"]
    elif misshapen == "not text":  # recorded with U+FFFD in its place, the only way it can be stored
        where = _not_text_at(params)
        params = _as_text(params)
        arguments, problems = None, [f"{where}: a lone surrogate, which is not text (stored as U+FFFD)"]
    else:
        arguments = _copy_json(params)
        problems = _problems(flow, arguments)
    timeout_s = flow.timeout_s or default_timeout_s
    run = Run(execution_id, flow, params, None if problems else arguments, started)
    run.parent, run.depth, run.services = parent, depth, services
    run.deadline = time.monotonic() + timeout_s
    # bound by its parent's deadline, a child sets no timer of its own: the parent's timer ends both,
    # so the parent reads "timeout" and the child "cancelled: parent timed out", never a race of two
    inherited = deadline is not None and deadline <= run.deadline
    if inherited:
        run.deadline = deadline
    try:
        await observer.execution_started(run)
    except asyncio.CancelledError:
        # cancelled while the start was being recorded: the record may be written all the same, so
        # it gets its end too, rather than stay pending while this process lives
        await _fail(run, observer, ErrorType.CANCELLED, _why_cancelled(run, deadline, cancelled_by))
        raise
    if problems:
        return await _fail(
            run, observer, ErrorType.INVALID_PARAMS, "invalid arguments: " + "; ".join(problems)
        )

    context = {
        "input": arguments,
        "nodes": {},
        "execution": {"id": execution_id, "flow": flow.name, "started_at": iso(started)},
    }
    try:
        async with asyncio.timeout(None if inherited else run.deadline - time.monotonic()):
            error, output = await _run_nodes(run, observer, context)
    except TimeoutError:
        step = _interrupt(run, observer, f"timed out after {timeout_s:g} s")
        error = ExecutionError(
            type=ErrorType.TIMEOUT, message=f"timed out after {timeout_s:g} s", node_id=step
        )
        output = None
    except asyncio.CancelledError:
        why = _why_cancelled(run, deadline, cancelled_by)
        step = _interrupt(run, observer, why)
        await _fail(run, observer, ErrorType.CANCELLED, why, step)
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
        if node.retry.attempts > 1:
            step.attempts = []
        try:
            output = await _run_node(run, observer, node, context, step, step)
        except NodeFailed as failed:
            step.status, step.ended_at, step.error = StepStatus.ERROR, now_us(), failed.message
            if not node.on_error_continue:
                observer.step_finished(run, step)
                return _node_error(step), None
            output = step.output = failed.output  # the error is the node's output, and the flow goes on
        else:
            step.status, step.ended_at, step.output = StepStatus.FULFILLED, now_us(), output
        outputs[node.spec_id] = last_output = output
        observer.step_finished(run, step)
    if flow.output is not None:
        try:
            return None, flow.output.render(context)
        except TemplateRenderError as exc:
            return ExecutionError(type=ErrorType.NODE_ERROR, message=f"output: {exc}", node_id=None), None
    return None, last_output


async def _run_node(
    run: Run, observer: Observer, node: PreparedNode, context: dict[str, Any], step: StepRun, notes: Notes
) -> Any:
    """A node with its policy, whatever its type: up to ``retry.attempts`` tries, each bounded by its
    own ``timeout_s``. A cancel or the execution's timeout is never retried (it is not the node's
    error: it goes through as cancellation). Raises :class:`NodeFailed` after the last try."""

    def report(message: str | None) -> None:
        observer.step_progress(run, step, message)

    node_context = NodeContext(
        run.execution_id, run.flow.name, node.spec_id, run.services, run.depth, run.deadline, notes, report
    )
    retry = node.retry
    if retry.attempts == 1:
        return await _try(run, observer, node, context, step, node_context)
    for attempt in range(1, retry.attempts + 1):
        started = now_us()
        try:
            output = await _try(run, observer, node, context, step, node_context)
        except NodeFailed as failed:
            if notes is step and step.attempts is not None:
                step.attempts.append(Attempt(started, now_us(), StepStatus.ERROR, failed.message))
            if attempt == retry.attempts:
                raise
            report(f"{node.spec_id} (try {attempt + 1})")
            await asyncio.sleep(retry.wait_before(attempt + 1))
        else:
            if notes is step and step.attempts is not None:
                step.attempts.append(Attempt(started, now_us(), StepStatus.FULFILLED))
            return output
    raise AssertionError("unreachable: the last try returns or raises")


async def _try(
    run: Run,
    observer: Observer,
    node: PreparedNode,
    context: dict[str, Any],
    step: StepRun,
    node_context: NodeContext,
) -> Any:
    """One try, as the node's failure or its output."""
    if node.timeout_s is None:  # most nodes: no limit of their own to keep
        try:
            return await _invoke(run, observer, node, context, step, node_context)
        except NodeFailed:
            raise
        except Exception as exc:
            raise _failure(exc) from None
    limit = asyncio.timeout(node.timeout_s)
    try:
        async with limit:
            return await _invoke(run, observer, node, context, step, node_context)
    except TimeoutError as exc:
        if limit.expired():
            raise NodeFailed(f"timed out after {node.timeout_s:g} s") from None
        raise _failure(exc) from None
    except NodeFailed:
        raise
    except Exception as exc:
        raise _failure(exc) from None


async def _invoke(
    run: Run,
    observer: Observer,
    node: PreparedNode,
    context: dict[str, Any],
    step: StepRun,
    node_context: NodeContext,
) -> Any:
    config = node.static_config or node.node_type.parse_config(render_value(node.config, context))
    if node.inner is not None:
        return await _run_map(run, observer, node, config, context, step, node_context)
    return await node.node_type.run(config, node_context)


def _failure(exc: Exception) -> NodeFailed:
    """A node's exception as its failure: a node is user or plugin code, so any exception of it is
    the node's error (its message when it is a node or template error, else its type too)."""
    if isinstance(exc, NodeError | TemplateRenderError):
        return NodeFailed(str(exc))
    return NodeFailed(f"{type(exc).__name__}: {exc}")


async def _run_map(
    run: Run,
    observer: Observer,
    node: PreparedNode,
    config: Any,
    context: dict[str, Any],
    step: StepRun,
    node_context: NodeContext,
) -> list[Any]:
    """The map's node for each item, ``concurrency`` at a time; the outputs in item order. The first
    item that fails (unless its node continues on error) fails the map: the items still running are
    cancelled, the others never start (they stay ``skipped``)."""
    items = config.items
    if not isinstance(items, list):
        raise NodeFailed(f"items must be a list, not {type(items).__name__}")
    inner: PreparedNode = node.inner  # type: ignore[assignment]
    total = len(items)
    records = step.items = [ItemRun(index) for index in range(total)]
    outputs: list[Any] = [None] * total
    slots = asyncio.Semaphore(config.concurrency)
    running: set[asyncio.Task[None]] = set()
    failure: list[tuple[int, str]] = []
    done, told = 0, time.monotonic()

    async def one(index: int, item: Any) -> None:
        nonlocal done, told
        record = records[index]
        record.status, record.started_at = StepStatus.PENDING, now_us()
        try:
            outputs[index] = await _run_node(
                run, observer, inner, {**context, "item": item, "index": index}, step, record
            )
            record.status = StepStatus.FULFILLED
        except NodeFailed as failed:
            record.status, record.error = StepStatus.ERROR, failed.message
            if inner.on_error_continue:
                outputs[index] = failed.output
            elif not failure:
                failure.append((index, failed.message))
                for task in running:
                    if task is not asyncio.current_task():
                        task.cancel()
        except asyncio.CancelledError:
            record.status, record.error = StepStatus.ERROR, "cancelled"
            raise
        finally:
            record.ended_at = now_us()
            slots.release()
            done += 1
            if done == total or time.monotonic() - told >= PROGRESS_EVERY_S:
                told = time.monotonic()
                node_context.progress(f"{node.spec_id} [{done}/{total}]")

    try:
        for index, item in enumerate(items):
            await slots.acquire()
            if failure:
                slots.release()
                break
            task = asyncio.get_running_loop().create_task(one(index, item))
            running.add(task)
            task.add_done_callback(running.discard)
        while running:
            await asyncio.wait(set(running))
    except asyncio.CancelledError:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        raise
    if failure:
        index, message = failure[0]
        raise NodeFailed(f"item {index}: {message}")
    return outputs


def _why_cancelled(run: Run, parent_deadline: float | None, cancelled_by: str | None) -> str:
    """A cancel's message, naming who cancelled when it is known."""
    if run.parent is not None:
        late = parent_deadline is not None and time.monotonic() >= parent_deadline
        return "cancelled: parent timed out" if late else "cancelled: parent cancelled"
    return f"cancelled by {cancelled_by}" if cancelled_by else "cancelled"


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
