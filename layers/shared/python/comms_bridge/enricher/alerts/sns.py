"""The SNS alert: a subject and a plain-text body, as an e-mail subscriber reads them in a mail client.

SNS rejects a subject longer than 100 characters, with a line break, or with characters outside printable
ASCII, so the subject is built from our own words and ids and then forced into that shape. The body has no
limit that matters here (SNS allows 256 KB; messages in groups are already cut to 1,000 characters).

Text from the API can never start a line of its own (contract §6): an error message is made one line
(``wording.api_text``) and every line of it, once wrapped, starts with ``     | `` (a quote bar no line of
ours starts with); sample ids are shown only when they look like ids.
"""

from __future__ import annotations

import re
import textwrap
from typing import Final

from comms_bridge.comms.models import STAT_FIELDS
from comms_bridge.enricher.alerts.wording import (
    ALERT_SAMPLES,
    api_text,
    code_label,
    coverage_line,
    format_count,
    format_rate,
    headline,
    shown_id,
    stall_headline,
    stall_line,
)
from comms_bridge.enricher.grouping import ErrorGroup, clip
from comms_bridge.enricher.stall import StallAlert
from comms_bridge.enricher.summary import ErrorsSummary
from comms_bridge.events.details import RATE_FIELDS

MAX_SUBJECT_CHARS: Final = 100
SUBJECT_PREFIX: Final = "[comms-bridge] "
BODY_WIDTH: Final = 78
API_TEXT_PREFIX: Final = "     | "
_NOT_PRINTABLE_ASCII: Final = re.compile(r"[^\x20-\x7e]+")


def safe_subject(text: str) -> str:
    """Printable ASCII only, one line, at most 100 characters."""
    flat = _NOT_PRINTABLE_ASCII.sub(" ", text.replace("…", "..."))
    flat = re.sub(r" {2,}", " ", flat).strip() or "comms-bridge alert"
    return clip(flat, MAX_SUBJECT_CHARS, ellipsis="...")


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


def _counter_lines(alert: ErrorsSummary | StallAlert) -> list[str]:
    rates = alert.rates
    lines = ["Counters"]
    width = max(len(format_count(int(alert.stats[name]))) for name in STAT_FIELDS)
    for name in STAT_FIELDS:
        value = format_count(int(alert.stats[name])).rjust(width)
        rate = f"  {format_rate(rates[name]).rjust(6)}" if name in RATE_FIELDS else ""
        lines.append(f"  {name:<12} {value}{rate}".rstrip())
    return lines


def _identity_lines(alert: ErrorsSummary | StallAlert) -> list[str]:
    return [
        f"  Operation  {alert.operation_id}",
        f"  Account    {alert.account_sid}",
        f"  Status     {alert.status}",
        f"  Trigger    {alert.trigger_detail_type}",
    ]


def group_lines(rank: int, group: ErrorGroup) -> list[str]:
    """One error group: our words on the first line, the API's message quoted below it."""
    lines = [f"  {rank}. {format_count(group.count)} x {code_label(group)}"]
    message = "(no message)" if group.message is None else api_text(group.message)
    lines.extend(_wrapped(message or "(empty message)", API_TEXT_PREFIX))
    if group.sample_email_ids:
        samples = ", ".join(shown_id(email) for email in group.sample_email_ids[:ALERT_SAMPLES])
        lines.extend(_wrapped(f"e.g. {samples}", "     ", "          "))
    return lines


def render_body(alert: ErrorsSummary | StallAlert) -> str:
    if isinstance(alert, StallAlert):
        return render_stall_body(alert)
    summary = alert
    lines = [
        *_wrapped(f"Email operation {summary.operation_id} is {summary.status}: {headline(summary)}.", ""),
        "",
        *_identity_lines(summary),
        "",
        *_counter_lines(summary),
        "",
    ]
    if summary.note:
        lines.extend(_wrapped(f"NOTE: {summary.note}", ""))
        lines.append("")
    lines.extend(_wrapped(coverage_line(summary), ""))
    if summary.groups:
        lines.append("")
        lines.append("Top errors, most frequent first")
        for rank, group in enumerate(summary.groups, start=1):
            lines.extend(group_lines(rank, group))
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


def render_stall_body(alert: StallAlert) -> str:
    lines = [
        *_wrapped(f"Email operation {alert.operation_id} has stalled: {stall_headline(alert)}.", ""),
        "",
        *_identity_lines(alert),
        "",
        *_counter_lines(alert),
        "",
        *_wrapped(stall_line(alert), ""),
        "",
        "--",
        "Sent by the comms-bridge errors enricher.",
        f"  trigger eventKey  {alert.trigger_event_key}",
    ]
    return "\n".join(lines) + "\n"


def render_subject(alert: ErrorsSummary | StallAlert) -> str:
    # Most important first: if an unusually long id forces a cut, the numbers survive it.
    if isinstance(alert, StallAlert):
        return safe_subject(f"{SUBJECT_PREFIX}Stalled, {stall_headline(alert)} - {alert.operation_id}")
    return safe_subject(f"{SUBJECT_PREFIX}{headline(alert)} - {alert.operation_id}")


def render_sns(alert: ErrorsSummary | StallAlert) -> tuple[str, str]:
    return render_subject(alert), render_body(alert)
