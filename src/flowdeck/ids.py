"""Identifiers that sort by creation time (UUIDv7), so newest-first pages ride the primary key."""

from __future__ import annotations

import uuid6


def new_id() -> str:
    """A fresh UUIDv7 as text; later ids compare greater, also within one millisecond."""
    return str(uuid6.uuid7())
