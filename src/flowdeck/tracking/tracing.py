"""Traces over OTLP/HTTP, with the OpenTelemetry SDK, when the standard variables ask for them.

With ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` set, the process gets a
tracer provider (service name ``OTEL_SERVICE_NAME``, default ``flowdeck``; the exporter reads the
other ``OTEL_*`` variables itself) and:

- an execution is a span, ``flow <name>``, current while it runs: under the MCP SDK's ``tools/call``
  span when a client called (the SDK continues a ``traceparent`` sent in ``_meta``), under its
  parent's node when a ``flow`` node started it;
- each node is a span, ``node <id>``, current while the node runs, so that what it calls nests in
  it: child executions, the MCP SDK's client span of an ``mcp`` node (which passes ``traceparent``
  on in ``_meta``), an ``http`` node's request (which sends the header); a node tried more than once
  has a span per try;
- a failed execution, node or try has status ERROR.

Spans go out from the SDK's batch processor thread: an endpoint that is down or answers errors
never slows or fails a call; its spans are dropped, said once in the log (and once more when the
endpoint answers again). Unset, nothing here runs: no provider, no spans, one check per call.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from opentelemetry import context, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from flowdeck.engine import Run, StepRun
from flowdeck.states import Status as ExecutionStatus
from flowdeck.states import StepStatus

log = logging.getLogger("flowdeck.tracing")

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
NS_PER_US = 1000

_tracer: Tracer | None = None
_configured = False


def tracer() -> Tracer | None:
    """The process's tracer when traces are exported, else None; set up at the first ask."""
    global _tracer, _configured
    if not _configured:
        _configured = True
        if any(os.environ.get(name) for name in ENDPOINT_VARIABLES):
            _tracer = _start()
    return _tracer


def _start() -> Tracer:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # the exporter logs each failed export, with a traceback: this module says it once instead
    logging.getLogger("opentelemetry.exporter.otlp.proto.http.trace_exporter").setLevel(logging.CRITICAL)
    logging.getLogger("opentelemetry.exporter.otlp.proto.http").setLevel(logging.CRITICAL)
    name = os.environ.get("OTEL_SERVICE_NAME") or "flowdeck"
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    provider.add_span_processor(BatchSpanProcessor(_SaidOnce(OTLPSpanExporter())))
    trace.set_tracer_provider(provider)  # the MCP SDK's spans go out through it too
    return trace.get_tracer("flowdeck")


def trace_id(span: Span) -> str:
    """As tracing backends show it: 32 hex digits."""
    return format(span.get_span_context().trace_id, "032x")


def execution_span(tracer: Tracer, flow_name: str, execution_id: str) -> Any:
    """The span of one execution, made current by ``with``."""
    attributes = {"flowdeck.execution_id": execution_id, "flowdeck.flow": flow_name}
    return tracer.start_as_current_span(
        f"flow {flow_name}", kind=SpanKind.INTERNAL, attributes=attributes, record_exception=False
    )


def end_execution(span: Span, run: Run) -> None:
    span.set_attribute("flowdeck.status", str(run.status))
    if run.status == ExecutionStatus.ERROR and run.error is not None:
        span.set_attribute("flowdeck.error_type", str(run.error.type))
        span.set_status(Status(StatusCode.ERROR, run.error.message))


class NodeSpans:
    """The engine's observer that makes each node a span, current while the node runs (told after
    the recorder, in the execution's own task)."""

    __slots__ = ("_open", "_tracer")

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer
        self._open: dict[int, tuple[Span, object]] = {}  # step index -> its span, and the context token

    async def execution_started(self, run: Run) -> None:
        return None

    def step_started(self, run: Run, step: StepRun) -> None:
        span = self._tracer.start_span(
            f"node {step.node_id}",
            attributes={"flowdeck.node_id": step.node_id, "flowdeck.node_type": step.node_type},
            start_time=step.started_at * NS_PER_US,
        )
        self._open[step.index] = (span, context.attach(trace.set_span_in_context(span)))

    def step_progress(self, run: Run, step: StepRun, message: str | None) -> None:
        return None

    def step_finished(self, run: Run, step: StepRun) -> None:
        opened = self._open.pop(step.index, None)
        if opened is None:  # skipped: it never started
            return
        span, token = opened
        context.detach(token)  # type: ignore[arg-type]
        tries = (
            step.attempts if step.attempts and len(step.attempts) > 1 else ()
        )  # one try: no span of its own
        for number, attempt in enumerate(tries, start=1):
            tried = self._tracer.start_span(
                f"try {number}",
                context=trace.set_span_in_context(span),
                attributes={"flowdeck.node_id": step.node_id, "flowdeck.try": number},
                start_time=attempt.started_at * NS_PER_US,
            )
            if attempt.status == StepStatus.ERROR:
                tried.set_status(Status(StatusCode.ERROR, attempt.error or "failed"))
            tried.end(end_time=(attempt.ended_at or attempt.started_at) * NS_PER_US)
        span.set_attribute("flowdeck.status", str(step.status))
        if step.status == StepStatus.ERROR:
            span.set_status(Status(StatusCode.ERROR, step.error or "failed"))
        span.end(end_time=(step.ended_at or step.started_at) * NS_PER_US)

    async def execution_finished(self, run: Run) -> None:
        for span, token in reversed(list(self._open.values())):  # a node the run left running
            context.detach(token)  # type: ignore[arg-type]
            span.end()
        self._open.clear()


class _SaidOnce(SpanExporter):
    """An exporter whose failures are one log line while they last, and one when they end."""

    def __init__(self, exporter: SpanExporter) -> None:
        self._exporter = exporter
        self._failing = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._exporter.export(spans)
        except Exception as exc:  # an exporter that raises is an exporter that failed
            result = SpanExportResult.FAILURE
            reason = str(exc)
        else:
            reason = "the endpoint refused them or did not answer"
        if result == SpanExportResult.FAILURE and not self._failing:
            self._failing = True
            log.warning(
                "traces are not reaching the OTLP endpoint (%s): spans are dropped until it answers", reason
            )
        elif result == SpanExportResult.SUCCESS and self._failing:
            self._failing = False
            log.warning("traces reach the OTLP endpoint again")
        return result

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._exporter.force_flush(timeout_millis)
