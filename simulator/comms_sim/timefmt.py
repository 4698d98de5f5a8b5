"""Timestamps and durations as the simulator reads and writes them.

Internally every instant is an integer count of epoch seconds: the API has second
precision, and integers make the lazy timeline arithmetic exact.
"""

from __future__ import annotations

import calendar
import re
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Final

_DURATION_RE: Final = re.compile(r"^\s*(-)?\s*((?:\d+(?:\.\d+)?\s*[dhms]\s*)+)$")
_PART_RE: Final = re.compile(r"(\d+(?:\.\d+)?)\s*([dhms])")
_UNIT_SECONDS: Final = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_RFC3339_RE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$")


def parse_duration(value: object) -> int:
    """Seconds from ``90``, ``"90"``, ``"30s"``, ``"5m"``, ``"1h30m"``, ``"-8d"`` (whole seconds)."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        return round(value)
    if isinstance(value, timedelta):
        return round(value.total_seconds())
    if isinstance(value, str):
        text = value.strip()
        try:
            return round(float(text))
        except ValueError:
            pass
        match = _DURATION_RE.match(text)
        if match:
            seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _PART_RE.findall(match[2]))
            return -round(seconds) if match[1] else round(seconds)
    raise ValueError(f"not a duration: {value!r} (use e.g. 30, '30s', '5m', '1h30m', '-8d')")


def parse_rfc3339(value: str) -> datetime:
    """Strict RFC 3339 with an offset; naive or date-only strings are rejected like the API would."""
    if not _RFC3339_RE.match(value):
        raise ValueError(f"not an RFC 3339 date-time: {value!r}")
    return datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00")).astimezone(UTC)


def to_datetime(value: object) -> datetime:
    """A scenario ``start``: an aware datetime or an RFC 3339 string (PyYAML may already have parsed it)."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, str):
        return parse_rfc3339(value)
    raise ValueError(f"not a date-time: {value!r}")


def epoch(value: datetime) -> int:
    """Whole epoch seconds (floor), the simulator's unit of time."""
    if value.tzinfo is None:
        raise ValueError("naive datetime; the simulator works in aware UTC")
    return calendar.timegm(value.utctimetuple())


def from_epoch(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def format_ts(seconds: int) -> str:
    """``2024-06-20T10:15:30Z``: UTC, second precision, ``Z`` suffix, as Twilio writes them."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def http_date(seconds: int) -> str:
    """An IMF-fixdate for the ``Date`` and ``Retry-After`` headers."""
    return format_datetime(from_epoch(seconds), usegmt=True)
