"""Wording shared by the Slack and the SNS alert, so both say the same thing in the same words, and the one
way text from the API is made safe to show (contract §6)."""

from __future__ import annotations

import re
import unicodedata
from typing import Final

from comms_bridge.enricher.grouping import ErrorGroup
from comms_bridge.enricher.stall import StallAlert
from comms_bridge.enricher.summary import ErrorsSummary

ALERT_SAMPLES: Final = 3
"""Sample email ids shown per group in an alert (the event carries up to 5)."""

_UNSAFE_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
"""Control characters, format characters (the bidi embeddings, overrides and isolates U+202A-U+202E,
U+2066-U+2069, the marks U+200E/U+200F, zero-width characters), surrogates, private-use and unassigned code
points, and line/paragraph separators."""
_SPACES: Final = re.compile(r"\s+")
_SHOWN_ID: Final = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def api_text(text: str) -> str:
    """Text from the API as an alert may show it: one line (any line break or control character becomes a
    space, so it cannot start a line of its own), with format and direction-override characters removed.
    Escaping for the medium (mrkdwn) comes on top."""
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if category in _UNSAFE_CATEGORIES:
            if category in ("Cc", "Zl", "Zp"):
                kept.append(" ")
            continue
        kept.append(char)
    return _SPACES.sub(" ", "".join(kept)).strip()


def shown_id(value: str) -> str:
    """A sample email id from the API, shown only if it looks like an id (letters, digits, ``_ . -``)."""
    return value if _SHOWN_ID.fullmatch(value) else "(malformed id)"


def format_count(value: int) -> str:
    return f"{value:,}"


def format_rate(value: float) -> str:
    return f"{value * 100:.1f}%"


def format_duration(seconds: int) -> str:
    """``42 minutes``, ``2 hours 5 minutes``, ``1 day 3 hours``: the two largest units."""
    minutes = max(seconds, 0) // 60
    days, hours, mins = minutes // 1440, minutes // 60 % 24, minutes % 60
    parts = [(days, "day"), (hours, "hour"), (mins, "minute")]
    shown = [f"{value} {unit}{'s' if value != 1 else ''}" for value, unit in parts if value]
    return " ".join(shown[:2]) or "less than a minute"


def headline(summary: ErrorsSummary) -> str:
    """One line both alerts open with, e.g. ``120 of 1,000 emails failed (12.0%)``."""
    failed = int(summary.stats["failed"])
    total = int(summary.stats["total"])
    rate = format_rate(summary.rates["failed"])
    return f"{format_count(failed)} of {format_count(total)} emails failed ({rate})"


def stall_headline(alert: StallAlert) -> str:
    """E.g. ``no progress for 42 minutes (320 of 500 emails sent)``."""
    sent = format_count(int(alert.stats["sent"]))
    total = format_count(int(alert.stats["total"]))
    return f"no progress for {format_duration(alert.stalled_for_seconds)} ({sent} of {total} emails sent)"


def stall_line(alert: StallAlert) -> str:
    stalled = format_duration(alert.stalled_for_seconds)
    return (
        f"The Comms API still reports it PROCESSING, last updated {alert.updated_at} "
        f"({stalled} before the API's clock at {alert.operation.api_time}). "
        "One alert per stall: another comes only if it moves and stalls again."
    )


def code_label(group: ErrorGroup) -> str:
    return "no code" if group.code is None else f"code {group.code}"


def coverage_line(summary: ErrorsSummary) -> str:
    """How much of the error list the groups cover, in words a reader of the alert understands."""
    groups = f"{summary.distinct_groups} distinct error{'s' if summary.distinct_groups != 1 else ''}"
    if summary.truncated:
        return (
            f"Errors read: {format_count(summary.error_count)} ({groups}); the list was not read to the end."
        )
    return f"Errors read: {format_count(summary.error_count)}, all of them ({groups})."
