"""Events as they travel between processes through PostgreSQL's NOTIFY: JSON texts under its payload
limit, each a list of ``[kind, flow_id, fields]``, times kept as stored."""

from __future__ import annotations

import functools
import json
from typing import Any

from pydantic import TypeAdapter
from pydantic_core import to_json

from flowdeck.events.event import KINDS, Event

NOTIFY_LIMIT = 7000  # bytes; PostgreSQL refuses payloads of 8000 and more


@functools.cache
def _adapter(kind: type) -> TypeAdapter[Any]:
    return TypeAdapter(kind)


def encode(event: Event) -> str:
    """``[kind, flow_id, fields]``: pydantic-core serializes the record's dataclass as its fields."""
    return to_json([event.kind, event.flow_id, event.record]).decode()


def decode(payload: str) -> list[Event]:
    events = []
    for kind, flow_id, fields in json.loads(payload):
        record = _adapter(KINDS[kind]).validate_python(fields)
        events.append(Event(kind, flow_id, record))
    return events


def notify_payloads(events: list[Event], limit: int = NOTIFY_LIMIT) -> list[str]:
    """The events as JSON texts under the payload limit; an event too large to travel is left out
    (watchers see the next event of that execution)."""
    payloads: list[str] = []
    batch: list[str] = []
    size = 2
    for event in events:
        text = encode(event)
        length = len(text.encode())
        if length > limit:
            continue
        if batch and size + length + 1 > limit:
            payloads.append("[" + ",".join(batch) + "]")
            batch, size = [], 2
        batch.append(text)
        size += length + 1
    if batch:
        payloads.append("[" + ",".join(batch) + "]")
    return payloads
