"""Runs a prepared flow node by node and tells an observer what happens.

The runner knows nothing of storage: the observer it is given decides what is recorded. The
observer's ``execution_started`` must succeed before any node runs; its failure ends the call.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from jinja2 import TemplateSyntaxError
from jsonschema import Draft202012Validator, validators

from flowdeck.engine.definition import FlowDefinition
from flowdeck.engine.nodes import NodeContext, NodeError, NodeType, node_types
from flowdeck.engine.templates import (
    Template,
    TemplateRenderError,
    compile_value,
    has_templates,
    render_value,
)

PENDING, FULFILLED, ERROR, SKIPPED = "pending", "fulfilled", "error", "skipped"
MAX_DEPTH = 64  # arguments nested deeper are refused: no client needs more, and recursion has limits


class FlowNotRunnable(Exception):
    """A definition that cannot be prepared: an unknown node type or a template that does not compile."""


def _defaults_filling(validator_class: type) -> type:
    """A validator that also fills in ``default`` values of object properties (the jsonschema recipe)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):  # type: ignore[no-untyped-def]
        if isinstance(instance, dict):
            for prop, subschema in properties.items():
                if isinstance(subschema, dict) and "default" in subschema:
                    instance.setdefault(prop, subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": set_defaults})


_InputValidator = _defaults_filling(Draft202012Validator)


@dataclass(slots=True)
class PreparedNode:
    spec_id: str
    type_name: str
    node_type: NodeType
    config: Any  # compiled config (templates inside)
    static_config: Any  # the validated config model when the config holds no template, else None
    when: Template | None


class PreparedFlow:
    """A definition made ready to run many times: node types resolved, templates compiled once."""

    def __init__(self, definition: FlowDefinition, *, flow_id: str = "", revision: int = 0) -> None:
        self.definition = definition
        self.flow_id = flow_id  # which stored flow this is: opaque to the engine, told to observers
        self.revision = revision
        self.name = definition.name
        self.timeout_s = definition.timeout_s
        registry = node_types()
        self.nodes: list[PreparedNode] = []
        try:
            for spec in definition.nodes:
                if spec.type not in registry:
                    raise FlowNotRunnable(f"node {spec.id!r}: unknown node type {spec.type!r}")
                node_type = registry[spec.type]
                config = compile_value(spec.config)
                static = None if has_templates(config) else node_type.parse_config(config)
                when = Template(spec.when) if spec.when is not None else None
                self.nodes.append(PreparedNode(spec.id, spec.type, node_type, config, static, when))
            self.output = Template(definition.output) if definition.output is not None else None
        except (TemplateSyntaxError, NodeError) as exc:
            raise FlowNotRunnable(f"flow {definition.name!r}: {exc}") from None
        self.validator = _InputValidator(definition.input_schema)


@dataclass(slots=True)
class Step:
    """One node's run, as the observer is told about it."""

    index: int
    node_id: str
    node_type: str
    status: str
    started_at: float
    ended_at: float | None = None
    output: Any = None
    error: str | None = None


@dataclass(slots=True)
class ExecutionError:
    type: str  # node_error, invalid_params, timeout, cancelled, interrupted, internal
    message: str
    node_id: str | None = None


@dataclass(slots=True)
class Run:
    """One execution of a flow: what the observer is told at start, and what it ends with."""

    execution_id: str
    flow: PreparedFlow
    initial_params: Any
    input: Any
    started_at: float
    status: str = PENDING
    ended_at: float | None = None
    output: Any = None
    error: ExecutionError | None = None
    steps: list[Step] = field(default_factory=list)


class Observer(Protocol):
    """What the runner tells. ``execution_started`` and ``execution_finished`` are awaited; the step
    calls are not, so that an observer can record steps off the hot path."""

    async def execution_started(self, run: Run) -> None: ...

    def step_started(self, run: Run, step: Step) -> None: ...

    def step_finished(self, run: Run, step: Step) -> None: ...

    async def execution_finished(self, run: Run) -> None: ...


class NullObserver:
    """Records nothing: the baseline the benchmarks compare tracking against, never a user setting."""

    async def execution_started(self, run: Run) -> None:
        return None

    def step_started(self, run: Run, step: Step) -> None:
        return None

    def step_finished(self, run: Run, step: Step) -> None:
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

    def step_started(self, run: Run, step: Step) -> None:
        for observer in self._observers:
            observer.step_started(run, step)

    def step_finished(self, run: Run, step: Step) -> None:
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
    started = time.time()
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
        await _finish(run, observer, ERROR, error=ExecutionError("cancelled", "cancelled"))
        raise
    if problems:
        message = "invalid arguments: " + "; ".join(problems)
        return await _finish(run, observer, ERROR, error=ExecutionError("invalid_params", message))

    timeout_s = flow.timeout_s or default_timeout_s
    context = {
        "input": arguments,
        "nodes": {},
        "execution": {"id": execution_id, "flow": flow.name, "started_at": _iso(started)},
    }
    try:
        async with asyncio.timeout(timeout_s):
            error, output = await _run_nodes(run, observer, context)
    except TimeoutError:
        step = _running_step(run)
        _interrupt(run, observer, step, f"timed out after {timeout_s:g} s")
        error, output = ExecutionError("timeout", f"timed out after {timeout_s:g} s", _node_id(step)), None
    except asyncio.CancelledError:
        step = _running_step(run)
        _interrupt(run, observer, step, "cancelled")
        await _finish(run, observer, ERROR, error=ExecutionError("cancelled", "cancelled", _node_id(step)))
        raise
    if error is not None:
        return await _finish(run, observer, ERROR, error=error)
    return await _finish(run, observer, FULFILLED, output=output)


async def _run_nodes(
    run: Run, observer: Observer, context: dict[str, Any]
) -> tuple[ExecutionError | None, Any]:
    """The nodes in order, then the output template: the execution's error, or its output."""
    flow, outputs = run.flow, context["nodes"]
    last_output = None
    for index, node in enumerate(flow.nodes):
        step = Step(index, node.spec_id, node.type_name, PENDING, time.time())
        run.steps.append(step)
        if node.when is not None and not _truthy(node, context, step):
            if step.status == PENDING:
                step.status, step.ended_at = SKIPPED, step.started_at
            observer.step_finished(run, step)
            if step.status == ERROR:
                return ExecutionError("node_error", step.error or "failed", step.node_id), None
            continue
        observer.step_started(run, step)
        try:
            config = node.static_config or node.node_type.parse_config(render_value(node.config, context))
            output = await node.node_type.run(config, NodeContext(run.execution_id, flow.name, node.spec_id))
        except (NodeError, TemplateRenderError) as exc:
            step.error = str(exc)
        except Exception as exc:  # a node is user or plugin code: its failure is the node's error
            step.error = f"{type(exc).__name__}: {exc}"
        step.ended_at = time.time()
        if step.error is not None:
            step.status = ERROR
            observer.step_finished(run, step)
            return ExecutionError("node_error", step.error, step.node_id), None
        step.status, step.output = FULFILLED, output
        outputs[node.spec_id] = last_output = output
        observer.step_finished(run, step)
    if flow.output is not None:
        try:
            return None, flow.output.render(context)
        except TemplateRenderError as exc:
            return ExecutionError("node_error", f"output: {exc}"), None
    return None, last_output


def _truthy(node: PreparedNode, context: dict[str, Any], step: Step) -> bool:
    """Evaluate ``when``; a failing condition marks the step as the node's error."""
    try:
        value = node.when.render(context)  # type: ignore[union-attr]
    except TemplateRenderError as exc:
        step.status, step.ended_at, step.error = ERROR, time.time(), f"when: {exc}"
        return False
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0", "none", "null", "no")
    return bool(value)


def _running_step(run: Run) -> Step | None:
    return run.steps[-1] if run.steps and run.steps[-1].status == PENDING else None


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _node_id(step: Step | None) -> str | None:
    return step.node_id if step is not None else None


def _interrupt(run: Run, observer: Observer, step: Step | None, message: str) -> None:
    if step is not None and step.status == PENDING:
        step.status, step.ended_at, step.error = ERROR, time.time(), message
        observer.step_finished(run, step)


async def _finish(
    run: Run, observer: Observer, status: str, *, output: Any = None, error: ExecutionError | None = None
) -> Run:
    run.status, run.ended_at, run.output, run.error = status, time.time(), output, error
    await observer.execution_finished(run)
    return run


def _copy_json(value: Any) -> Any:
    """A private copy of the arguments, so that filling defaults never changes what the client sent."""
    if isinstance(value, dict):
        return {key: _copy_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy_json(item) for item in value]
    return value
