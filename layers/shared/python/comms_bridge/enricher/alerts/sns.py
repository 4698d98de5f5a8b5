"""The SNS alert: a subject and a plain-text body, as an e-mail subscriber reads them in a mail client.

SNS rejects a subject longer than 100 characters, with a line break, or with characters outside printable
ASCII, so the subject is built from our own words and ids and then forced into that shape. The body has no
limit that matters here (SNS allows 256 KB; messages in groups are already cut to 1,000 characters).
"""

from __future__ import annotations

import re
import textwrap
from typing import Final

from comms_bridge.comms.models import STAT_FIELDS
from comms_bridge.enricher.alerts.wording import (
    ALERT_SAMPLES,
    code_label,
    coverage_line,
    format_count,
    format_rate,
    headline,
)
from comms_bridge.enricher.grouping import clip
from comms_bridge.enricher.summary import ErrorsSummary
from comms_bridge.events.details import RATE_FIELDS

MAX_SUBJECT_CHARS: Final = 100
SUBJECT_PREFIX: Final = "[comms-bridge] "
BODY_WIDTH: Final = 78
_NOT_PRINTABLE_ASCII: Final = re.compile(r"[^\x20-\x7e]+")


def safe_subject(text: str) -> str:
    """Printable ASCII only, one line, at most 100 characters."""
    flat = _NOT_PRINTABLE_ASCII.sub(" ", text.replace("…", "..."))
    flat = re.sub(r" {2,}", " ", flat).strip() or "comms-bridge alert"
    return clip(flat, MAX_SUBJECT_CHARS, ellipsis="...")


def render_subject(summary: ErrorsSummary) -> str:
    # Most important first: if an unusually long id forces a cut, the numbers survive it.
    text = f"{SUBJECT_PREFIX}{headline(summary)} - {summary.operation_id}"
    return safe_subject(text)


def _wrapped(text: str, indent: str, hanging: str | None = None) -> list[str]:
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        lines.extend(
            textwrap.wrap(
                paragraph,
                width=BODY_WIDTH,
                initial_indent=indent,
                subsequent_indent=indent if hanging is None else hanging,
                break_long_words=True,
                break_on_hyphens=False,
            )
            or [indent.rstrip()]
        )
    return lines


def render_body(summary: ErrorsSummary) -> str:
    rates = summary.rates
    lines = [
        *_wrapped(f"Email operation {summary.operation_id} is {summary.status}: {headline(summary)}.", ""),
        "",
        f"  Operation  {summary.operation_id}",
        f"  Account    {summary.account_sid}",
        f"  Status     {summary.status}",
        f"  Trigger    {summary.trigger_detail_type}",
        "",
        "Counters",
    ]
    width = max(len(format_count(int(summary.stats[name]))) for name in STAT_FIELDS)
    for name in STAT_FIELDS:
        value = format_count(int(summary.stats[name])).rjust(width)
        rate = f"  {format_rate(rates[name]).rjust(6)}" if name in RATE_FIELDS else ""
        lines.append(f"  {name:<12} {value}{rate}".rstrip())
    lines.append("")
    if summary.note:
        lines.extend(_wrapped(f"NOTE: {summary.note}", ""))
        lines.append("")
    lines.extend(_wrapped(coverage_line(summary), ""))
    if summary.groups:
        lines.append("")
        lines.append("Top errors, most frequent first")
        for rank, group in enumerate(summary.groups, start=1):
            code = code_label(group)
            message = "(no message)" if group.message is None else group.message
            lines.extend(_wrapped(f"{rank}. {format_count(group.count)} x {code}: {message}", "  ", "     "))
            if group.sample_email_ids:
                samples = ", ".join(group.sample_email_ids[:ALERT_SAMPLES])
                lines.extend(_wrapped(f"e.g. {samples}", "     ", "          "))
        hidden = summary.distinct_groups - len(summary.groups)
        if hidden > 0:
            lines.append(f"  ... and {format_count(hidden)} more distinct errors")
    lines.extend(
        [
            "",
            "--",
            "Sent by the comms-bridge errors enricher.",
            "Event: Email Operation Errors Summarized",
            f"  eventKey          {summary.event_key}",
            f"  trigger eventKey  {summary.trigger_event_key}",
        ]
    )
    return "\n".join(lines) + "\n"


def render_sns(summary: ErrorsSummary) -> tuple[str, str]:
    return render_subject(summary), render_body(summary)
