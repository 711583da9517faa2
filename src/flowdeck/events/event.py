"""An event: one record of an execution that changed, with where it belongs."""

from __future__ import annotations

from dataclasses import dataclass

from flowdeck.records import ExecutionSummary, StepChange
from flowdeck.states import Status, StepStatus

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

    @property
    def subject(self) -> tuple[str, int | None]:
        """What the event tells the state of: an execution, or one of its steps (by index)."""
        record = self.record
        if isinstance(record, ExecutionSummary):
            return record.id, None
        return record.execution_id, record.index

    @property
    def progress(self) -> tuple[bool, int]:
        """How far its subject had got: ended or not, then nodes done. States only move forward, so
        an event of less progress than one already seen for its subject is out of date."""
        record = self.record
        if isinstance(record, ExecutionSummary):
            return record.status != Status.PENDING, record.steps_done
        return record.status != StepStatus.PENDING, 0

    @classmethod
    def of(cls, record: ExecutionSummary) -> Event:
        return cls("execution", record.flow_id, record)

    @classmethod
    def of_step(cls, flow_id: str, record: StepChange) -> Event:
        return cls("step", flow_id, record)
