"""Live events: what watchers (the API's event streams, hence the Usage tab) are told as executions
start, finish nodes and end. The hub is owned by the runtime; the tracker publishes through it."""

from flowdeck.events.event import Event
from flowdeck.events.hub import Delivered, EventHub

__all__ = ["Delivered", "Event", "EventHub"]
