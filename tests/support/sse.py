"""Reading a Server-Sent Events stream as a browser's EventSource does."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Received:
    event: str  # "comment" for a ": ..." line
    data: Any
    id: str | None


async def read_events(response: httpx.Response) -> AsyncIterator[Received]:
    event, data, event_id = "message", [], None
    async for line in response.aiter_lines():
        if line.startswith(":"):
            yield Received("comment", line[1:].strip(), None)
        elif line == "":
            if data:  # an empty data line (an MCP stream's priming event) is None
                text = "\n".join(data)
                yield Received(event, json.loads(text) if text else None, event_id)
            event, data, event_id = "message", [], None
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
            elif field == "id":
                event_id = value
