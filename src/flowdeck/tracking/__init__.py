"""Tracking: the engine's observer that records executions, with recovery and heartbeats."""

from flowdeck.tracking.recorder import CallInfo, Recorder
from flowdeck.tracking.tracker import Tracker

__all__ = ["CallInfo", "Recorder", "Tracker"]
