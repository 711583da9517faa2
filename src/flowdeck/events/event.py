"""An event: one record of an execution that changed, with where it belongs."""

from __future__ import annotations

from dataclasses import dataclass

from flowdeck.records import ExecutionSummary, StepChange

# an event's kind (its SSE event name) and the record it carries
KINDS: dict[str, type[ExecutionSummary] | type[StepChange]] = {
    "execution": ExecutionSummary,
    "step": StepChange,
}


@dataclass(frozen=True, slots=True)
class Event:
    """``execution``: the execution's summary, as it stands; ``step``: a step started or ended."""

    kind: str
    flow_id: str
    record: ExecutionSummary | StepChange

    @property
    def execution_id(self) -> str:
        record = self.record
        return record.id if isinstance(record, ExecutionSummary) else record.execution_id

    @classmethod
    def of(cls, record: ExecutionSummary) -> Event:
        return cls("execution", record.flow_id, record)

    @classmethod
    def of_step(cls, flow_id: str, record: StepChange) -> Event:
        return cls("step", flow_id, record)
