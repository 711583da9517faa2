"""The process's Prometheus series, kept as executions start and end (never by counting rows when
scraped): a scrape costs nothing however many executions there are, and each execution is counted
once, by the process that ran it, whatever the writer had to retry to record it.

Each tracker has a registry of its own, so that several servers in one process (tests) don't mix.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from flowdeck.engine import Run
from flowdeck.states import Status, StepStatus

# from a transform's tens of microseconds to the 5-minute default timeout
DURATION_BUCKETS_S = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
)
US_PER_S = 1_000_000


class Metrics:
    """``waiting_writes`` tells how many tracking writes wait for the database, read at each scrape."""

    def __init__(self, waiting_writes: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        self._executions = Counter(
            "flowdeck_executions",
            "Executions ended, by flow, status and error type (empty when fulfilled)",
            ["flow", "status", "error_type"],
            registry=self.registry,
        )
        self._duration = Histogram(
            "flowdeck_execution_duration_seconds",
            "How long executions took, start to end",
            ["flow"],
            buckets=DURATION_BUCKETS_S,
            registry=self.registry,
        )
        self._in_flight = Gauge(
            "flowdeck_executions_in_flight", "Executions running now", ["flow"], registry=self.registry
        )
        self._node_duration = Histogram(
            "flowdeck_node_duration_seconds",
            "How long nodes took, by flow and node type (skipped nodes are not counted)",
            ["flow", "node_type"],
            buckets=DURATION_BUCKETS_S,
            registry=self.registry,
        )
        waiting = Gauge(
            "flowdeck_tracking_pending_writes",
            "Tracking writes waiting for the database (queued, or kept while it is away)",
            registry=self.registry,
        )
        waiting.set_function(waiting_writes)

    def started(self, run: Run) -> None:
        self._in_flight.labels(run.flow.name).inc()

    def refused(self, run: Run) -> None:
        """Not started after all: its ``pending`` row could not be written, no node ran."""
        self._in_flight.labels(run.flow.name).dec()

    def ended(self, run: Run) -> None:
        """Count an execution that ``started`` counted, once it has its end."""
        flow = run.flow.name
        self._in_flight.labels(flow).dec()
        error_type = run.error.type if run.error is not None and run.status == Status.ERROR else ""
        self._executions.labels(flow, run.status, error_type).inc()
        if run.ended_at is not None:
            self._duration.labels(flow).observe((run.ended_at - run.started_at) / US_PER_S)
        for step in run.steps:
            if step.ended_at is not None and step.status != StepStatus.SKIPPED:
                self._node_duration.labels(flow, step.node_type).observe(
                    (step.ended_at - step.started_at) / US_PER_S
                )

    def exposition(self) -> bytes:
        """The Prometheus text format."""
        return generate_latest(self.registry)
