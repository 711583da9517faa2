"""The process's Prometheus series, kept as executions start and end (never by counting rows when
scraped): a scrape costs nothing however many executions there are, and each execution is counted
once, by the process that ran it, whatever the writer had to retry to record it.

The numbers are kept here, in plain dicts and lists, and handed to prometheus-client as metric
families when scraped (a custom collector, in a registry of the tracker's own, so that several
servers in one process don't mix). prometheus-client's own Histogram takes a lock per bucket and
walks them in turn: with its series looked up once, 36 µs for an execution of ten nodes, against 13
µs here. Every update and every scrape runs on the event loop, so nothing needs a lock.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

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


class _Histograms:
    """Histograms by label values: per series, a count per bucket (and one past the last) and a sum."""

    def __init__(self) -> None:
        self.series: dict[tuple[str, ...], list[float]] = {}

    def observe(self, labels: tuple[str, ...], seconds: float) -> None:
        counts = self.series.get(labels)
        if counts is None:
            counts = self.series[labels] = [0.0] * (len(DURATION_BUCKETS_S) + 2)  # ..., +Inf, sum
        counts[bisect_left(DURATION_BUCKETS_S, seconds)] += 1
        counts[-1] += seconds

    def family(self, name: str, documentation: str, label_names: list[str]) -> HistogramMetricFamily:
        family = HistogramMetricFamily(name, documentation, labels=label_names)
        for labels, counts in self.series.items():
            cumulative, buckets = 0.0, []
            bounds = (*map(floatToGoString, DURATION_BUCKETS_S), "+Inf")
            for bound, count in zip(bounds, counts[:-1], strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            family.add_metric(list(labels), buckets, counts[-1])
        return family


class Metrics(Collector):
    """``waiting_writes`` tells how many tracking writes wait for the database, read at each scrape."""

    def __init__(self, waiting_writes: Callable[[], int]) -> None:
        self._waiting_writes = waiting_writes
        self._executions: dict[tuple[str, str, str], int] = {}
        self._in_flight: dict[str, int] = {}
        self._durations = _Histograms()
        self._node_durations = _Histograms()
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def started(self, run: Run) -> None:
        flow = run.flow.name
        self._in_flight[flow] = self._in_flight.get(flow, 0) + 1

    def refused(self, run: Run) -> None:
        """Not started after all: its ``pending`` row could not be written, no node ran."""
        self._in_flight[run.flow.name] -= 1

    def ended(self, run: Run) -> None:
        """Count an execution that ``started`` counted, once it has its end."""
        flow = run.flow.name
        self._in_flight[flow] -= 1
        error_type = run.error.type if run.error is not None and run.status == Status.ERROR else ""
        key = (flow, str(run.status), str(error_type))
        self._executions[key] = self._executions.get(key, 0) + 1
        if run.ended_at is not None:
            self._durations.observe((flow,), (run.ended_at - run.started_at) / US_PER_S)
        for step in run.steps:
            if step.ended_at is not None and step.status != StepStatus.SKIPPED:
                self._node_durations.observe(
                    (flow, step.node_type), (step.ended_at - step.started_at) / US_PER_S
                )

    def collect(self) -> Iterator[Metric]:
        executions = CounterMetricFamily(
            "flowdeck_executions",
            "Executions ended, by flow, status and error type (empty when fulfilled)",
            labels=["flow", "status", "error_type"],
        )
        for labels, count in self._executions.items():
            executions.add_metric(list(labels), count)
        yield executions
        yield self._durations.family(
            "flowdeck_execution_duration_seconds", "How long executions took, start to end", ["flow"]
        )
        in_flight = GaugeMetricFamily(
            "flowdeck_executions_in_flight", "Executions running now", labels=["flow"]
        )
        for flow, count in self._in_flight.items():
            in_flight.add_metric([flow], count)
        yield in_flight
        yield self._node_durations.family(
            "flowdeck_node_duration_seconds",
            "How long nodes took, by flow and node type (skipped nodes are not counted)",
            ["flow", "node_type"],
        )
        yield GaugeMetricFamily(
            "flowdeck_tracking_pending_writes",
            "Tracking writes waiting for the database (queued, or kept while it is away)",
            value=self._waiting_writes(),
        )

    def exposition(self) -> bytes:
        """The Prometheus text format."""
        return generate_latest(self.registry)
