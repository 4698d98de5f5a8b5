"""The Slack alert: a Block Kit message for an incoming webhook, within Slack's limits.

Limits kept (Slack Block Kit reference): at most 50 blocks; a section's text at most 3,000 characters;
a header's plain text at most 150; at most 10 fields of at most 2,000 characters; at most 10 context
elements.

Text from the API (error messages, sample ids) is made one line without control or direction-override
characters (``wording.api_text``), then escaped for mrkdwn (``&``, ``<``, ``>``), and every mrkdwn text
object is ``verbatim``: Slack neither links URLs nor parses ``@here``/``@channel``/``#channel`` in it.
"""

from __future__ import annotations

from typing import Any, Final

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

MAX_BLOCKS: Final = 50
MAX_SECTION_CHARS: Final = 3000
MAX_HEADER_CHARS: Final = 150
MAX_FIELD_CHARS: Final = 2000
MAX_FIELDS: Final = 10
MAX_CONTEXT_ELEMENTS: Final = 10
MAX_GROUP_MESSAGE_CHARS: Final = 1500
MAX_FALLBACK_CHARS: Final = 3000

COUNTER_FIELDS: Final = ("total", "delivered", "opened", "failed", "undelivered", "canceled")


def escape(text: str) -> str:
    """mrkdwn control characters (Slack: escape &, < and >; nothing else)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _code_span(text: str) -> str:
    # A backtick inside a code span would end it early.
    cleaned = escape(text).replace("`", "'")
    return f"`{cleaned}`"


def _mrkdwn(text: str, limit: int = MAX_SECTION_CHARS) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": clip(text, limit), "verbatim": True}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(text)}


def _context(*texts: str) -> dict[str, Any]:
    return {"type": "context", "elements": [_mrkdwn(text) for text in texts[:MAX_CONTEXT_ELEMENTS]]}


def _counter_fields(alert: ErrorsSummary | StallAlert) -> list[dict[str, Any]]:
    rates = alert.rates
    fields = []
    for name in COUNTER_FIELDS:
        value = format_count(int(alert.stats[name]))
        if name in RATE_FIELDS:
            value = f"{value} ({format_rate(rates[name])})"
        fields.append(_mrkdwn(f"*{name.capitalize()}*\n{value}", MAX_FIELD_CHARS))
    return fields[:MAX_FIELDS]


def group_text(rank: int, group: ErrorGroup) -> str:
    message = (
        "(no message)"
        if group.message is None
        else escape(clip(api_text(group.message), MAX_GROUP_MESSAGE_CHARS))
    )
    lines = [f"*{rank}. {format_count(group.count)} \u00d7* {_code_span(code_label(group))}  {message}"]
    if group.sample_email_ids:
        samples = group.sample_email_ids[:ALERT_SAMPLES]
        lines.append("e.g. " + ", ".join(_code_span(shown_id(email)) for email in samples))
    return "\n".join(lines)


def _header(title: str) -> dict[str, Any]:
    return {
        "type": "header",
        "text": {"type": "plain_text", "text": clip(title, MAX_HEADER_CHARS), "emoji": True},
    }


def _identity(alert: ErrorsSummary | StallAlert) -> dict[str, Any]:
    return _section(
        f"*Operation* {_code_span(alert.operation_id)}\n"
        f"*Account* {_code_span(alert.account_sid)}\n"
        f"*Status* {escape(alert.status)}  ·  triggered by _{escape(alert.trigger_detail_type)}_"
    )


def render_slack_message(alert: ErrorsSummary | StallAlert) -> dict[str, Any]:
    """The webhook payload: Block Kit ``blocks`` plus ``text``, the fallback shown in notifications."""
    if isinstance(alert, StallAlert):
        return render_stall_message(alert)
    summary = alert
    title = f"Email operation {summary.status.lower()}: {headline(summary)}"
    blocks: list[dict[str, Any]] = [
        _header(title),
        _identity(summary),
        {"type": "section", "fields": _counter_fields(summary)},
    ]
    if summary.note:
        blocks.append(_section(f":warning: {escape(summary.note)}"))
    blocks.append(_context(escape(coverage_line(summary))))
    footer = _context(
        f"Summary event key {_code_span(summary.event_key)} · trigger {_code_span(summary.trigger_event_key)}"
    )
    if summary.groups:
        blocks.append({"type": "divider"})
        blocks.append(_section("*Top errors, most frequent first*"))
        # Room left for the groups: the footer and a possible "more groups" line stay within 50 blocks.
        room = MAX_BLOCKS - len(blocks) - 2
        shown = summary.groups[:room]
        blocks.extend(_section(group_text(rank, group)) for rank, group in enumerate(shown, start=1))
        hidden = summary.distinct_groups - len(shown)
        if hidden > 0:
            blocks.append(
                _context(
                    f"…and {format_count(hidden)} more distinct error{'s' if hidden != 1 else ''} "
                    "(the Errors Summarized event lists up to 20)"
                )
            )
    blocks.append(footer)
    fallback = f"{title} ({summary.operation_id})"
    return {"text": clip(fallback, MAX_FALLBACK_CHARS), "blocks": blocks[:MAX_BLOCKS]}


def render_stall_message(alert: StallAlert) -> dict[str, Any]:
    """A stall, laid out like the failure alert: header, identity, counters, what the API says, keys."""
    title = f"Email operation stalled: {stall_headline(alert)}"
    blocks: list[dict[str, Any]] = [
        _header(title),
        _identity(alert),
        {"type": "section", "fields": _counter_fields(alert)},
        _section(f":hourglass: {escape(stall_line(alert))}"),
        _context(f"Trigger event key {_code_span(alert.trigger_event_key)}"),
    ]
    fallback = f"{title} ({alert.operation_id})"
    return {"text": clip(fallback, MAX_FALLBACK_CHARS), "blocks": blocks}


def plain_rendering(message: dict[str, Any]) -> str:
    """A plain-text view of a Block Kit message, roughly as Slack lays it out (for the docs and logs)."""
    lines: list[str] = []
    for block in message["blocks"]:
        kind = block["type"]
        if kind == "header":
            lines.append(block["text"]["text"])
            lines.append("=" * min(len(block["text"]["text"]), 80))
        elif kind == "section" and "text" in block:
            lines.append(block["text"]["text"])
        elif kind == "section":
            lines.append("   ".join(field["text"].replace("\n", ": ") for field in block["fields"]))
        elif kind == "context":
            lines.append("  ".join(element["text"] for element in block["elements"]))
        elif kind == "divider":
            lines.append("-" * 40)
    return "\n".join(lines)
