"""Time as flowdeck keeps it: integer microseconds since the Unix epoch, UTC. Compact, cheap to sort
and subtract, the same on SQLite and PostgreSQL; shown as ISO 8601 ending in ``Z``."""

from __future__ import annotations

import functools
import re
import time
from datetime import UTC, datetime

SECOND_US = 1_000_000
DAY_US = 86_400 * SECOND_US


def now_us() -> int:
    """Now, as stored."""
    return time.time_ns() // 1000


def iso(us: int | None) -> str | None:
    """ISO 8601 in UTC ending in ``Z``, to the millisecond (``2026-11-29T13:06:03.206Z``). Every
    time in every JSON answer goes through here: the minute is looked up, the rest is arithmetic."""
    if us is None:
        return None
    minute, rest = divmod(us, 60 * SECOND_US)
    return f"{_minute(minute)}{rest // SECOND_US:02d}.{rest // 1000 % 1000:03d}Z"


@functools.lru_cache(maxsize=4096)
def _minute(minute: int) -> str:
    return datetime.fromtimestamp(minute * 60, UTC).strftime("%Y-%m-%dT%H:%M:")


def exact(us: int | None) -> str:
    """For people: ``2026-11-29 13:06:03.206 UTC``."""
    if us is None:
        return ""
    return datetime.fromtimestamp(us / SECOND_US, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def clock(us: int | None, now: int | None = None) -> str:
    """A start time in a list: ``14:02:11`` today, ``Nov 29 14:02:11`` another day (UTC)."""
    if us is None:
        return ""
    moment = datetime.fromtimestamp(us / SECOND_US, UTC)
    if day(us) == day(now or now_us()):
        return f"{moment:%H:%M:%S}"
    return f"{moment:%b %d %H:%M:%S}"


def duration_ms(started_us: int, ended_us: int | None) -> float | None:
    """Milliseconds between two stored times, to the microsecond; None while not ended."""
    return None if ended_us is None else round((ended_us - started_us) / 1000, 3)


def day(us: int) -> int:
    """The UTC day of a stored time, in days since the epoch."""
    return us // DAY_US


def relative(us: int | None, now: int | None = None) -> str:
    """How long ago, in the largest whole unit: ``just now``, ``5 min ago``, ``3 h ago``, ``2 d ago``."""
    if us is None:
        return ""
    seconds = ((now or now_us()) - us) / SECOND_US
    if seconds < 45:
        return "just now"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now"


def duration_text(ms: float | None) -> str:
    """A duration for people, in the unit that suits it: ``662 µs``, ``12.5 ms``, ``1.20 s``."""
    if ms is None:
        return ""
    if ms < 1:
        return f"{ms * 1000:.0f} µs"
    if ms < 1000:
        return f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f} s"
    return f"{int(ms // 60_000)} min {ms % 60_000 / 1000:.0f} s"


def parse_iso(text: str) -> int:
    """A time a person or a script gives (``2026-11-30T14:02:11Z``, ``2026-11-30T14:02``,
    ``2026-11-30``; UTC when no offset is given) as stored microseconds; ValueError if it is none."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * SECOND_US)


# the time of day in an ISO 8601 text: hours, minutes, seconds and a fraction, as far as given
_TIME_OF_DAY = re.compile(r"[T ]\d\d(:\d\d(:\d\d([.,]\d+)?)?)?")


def parse_iso_end(text: str) -> int:
    """The last microsecond of the moment a text names, to the precision it is given in: an end
    of ``14:02:11`` includes 14:02:11.5, one of ``2026-11-30`` the whole day; ValueError if none."""
    start = parse_iso(text)
    found = _TIME_OF_DAY.search(text)
    if found is None:
        span = DAY_US
    elif found[1] is None:
        span = 3600 * SECOND_US
    elif found[2] is None:
        span = 60 * SECOND_US
    elif found[3] is None:
        span = SECOND_US
    else:
        span = 10 ** max(0, 7 - len(found[3]))  # the fraction's digits, after its point
    return start + span - 1
