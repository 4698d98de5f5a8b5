"""Wording shared by the Slack and the SNS alert, so both say the same thing in the same words."""

from __future__ import annotations

from typing import Final

from comms_bridge.enricher.grouping import ErrorGroup
from comms_bridge.enricher.summary import ErrorsSummary

ALERT_SAMPLES: Final = 3
"""Sample email ids shown per group in an alert (the event carries up to 5)."""


def format_count(value: int) -> str:
    return f"{value:,}"


def format_rate(value: float) -> str:
    return f"{value * 100:.1f}%"


def headline(summary: ErrorsSummary) -> str:
    """One line both alerts open with, e.g. ``120 of 1,000 emails failed (12.0%)``."""
    failed = int(summary.stats["failed"])
    total = int(summary.stats["total"])
    rate = format_rate(summary.rates["failed"])
    return f"{format_count(failed)} of {format_count(total)} emails failed ({rate})"


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
