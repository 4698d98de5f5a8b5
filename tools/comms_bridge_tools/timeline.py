"""Terminal rendering of the demo: the live timeline, the alerts as people read them, the summary table.

Everything here turns plain values into text on a ``rich`` console and nothing else: no servers, no
clocks. Colour is used when the console has it (a terminal, no ``NO_COLOR``, no ``--no-color``); the same
lines come out as plain text otherwise, so a captured transcript reads like the screen.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TextIO

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

# Wide enough for a timeline line without wrapping; a captured transcript uses it too.
PLAIN_WIDTH: Final = 130
DETAIL_TYPE_PREFIX: Final = "Email Operation "
OPERATION_WIDTH: Final = 13
# An alert shows its first lines; the rest (counters, sample ids) is in the JSON summary.
ALERT_LINES: Final = 14
ALERT_WIDTH: Final = 100
# A failed share below this is noise on a timeline line.
RATE_WORTH_SHOWING: Final = 0.01

_STYLES: Final[Mapping[str, str]] = {
    "Status Changed": "bold cyan",
    "Stats Changed": "blue",
    "Stalled": "bold yellow",
    "Errors Summarized": "bold magenta",
}
_ARROW: Final = "→"
# The counters whose growth a reader follows, in the order they are worth mentioning.
_DELTAS: Final = ("opened", "failed", "delivered", "sent")
_SLACK_LINK_RE: Final = re.compile(r"<([^|>]+)\|([^>]+)>")


def make_console(*, no_color: bool = False, file: TextIO | None = None) -> Console:
    """A console bound to the given stream (default: the process's stdout at call time).

    The stream is captured once so that handler output redirected during an invocation never swallows the
    timeline. ``NO_COLOR`` is honoured by rich itself; ``no_color`` adds the command-line switch.
    """
    stream = file if file is not None else sys.stdout
    probe = Console(file=stream)
    columns = os.environ.get("COLUMNS", "")
    width = None if probe.is_terminal else int(columns) if columns.isdigit() else PLAIN_WIDTH
    return Console(
        file=stream,
        no_color=no_color or bool(os.environ.get("NO_COLOR")),
        highlight=False,
        emoji=False,
        width=width,
        soft_wrap=False,
    )


def short_detail_type(detail_type: str) -> str:
    return detail_type.removeprefix(DETAIL_TYPE_PREFIX)


def _n(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def _pct(value: Any) -> str:
    return f"{float(value) * 100:.1f}%" if isinstance(value, int | float) else "?"


def describe_transition(detail_type: str, detail: Mapping[str, Any]) -> str:
    """What happened to the operation, in a few words."""
    kind = short_detail_type(detail_type)
    status = str(detail.get("status", "?"))
    if kind == "Status Changed":
        previous = detail.get("previousStatus")
        return f"{previous} {_ARROW} {status}" if previous else f"first seen {status}"
    if kind == "Stats Changed":
        return status
    if kind == "Stalled":
        seconds = detail.get("stalledForSeconds")
        minutes = int(seconds) // 60 if isinstance(seconds, int | float) else "?"
        return f"no update in {minutes} min"
    if kind == "Errors Summarized":
        groups = detail.get("errorGroups") or []
        more = "+" if detail.get("truncated") else ""
        return f"{_n(detail.get('errorCount', 0))}{more} errors read, {len(groups)} groups"
    return status


def describe_counters(detail_type: str, detail: Mapping[str, Any]) -> str:
    """The counters a reader looks at first: progress, deliveries, failures (with the failed rate)."""
    stats = detail.get("stats") or {}
    if short_detail_type(detail_type) == "Errors Summarized":
        groups = detail.get("errorGroups") or []
        if not groups:
            return "no error groups"
        top = groups[0]
        return f"top {top.get('code')} x{_n(top.get('count', 0))}: {top.get('message', '')!s}"
    total = stats.get("total", 0)
    parts = [f"sent {_n(stats.get('sent', 0))}/{_n(total)}", f"delivered {_n(stats.get('delivered', 0))}"]
    rates = detail.get("rates") or {}
    for name in ("opened", "failed", "canceled"):
        if stats.get(name):
            shown_rate = name == "failed" and float(rates.get(name, 0)) >= RATE_WORTH_SHOWING
            parts.append(f"{name} {_n(stats[name])}" + (f" ({_pct(rates[name])})" if shown_rate else ""))
    if short_detail_type(detail_type) == "Stats Changed" and detail.get("terminal"):
        # After completion the news is what moved (late opens, late deliveries): the growth, inline.
        delta = detail.get("delta") or {}
        for index, part in enumerate(parts):
            name = part.split()[0]
            grown = delta.get(name)
            if name in _DELTAS and isinstance(grown, int) and grown > 0:
                parts[index] = f"{part} (+{_n(grown)})"
    return " · ".join(parts)


def slack_payload_text(payload: Mapping[str, Any]) -> str:
    """A Slack incoming-webhook payload as a person reads it: the blocks if any, else the fallback text.

    Section fields sit side by side as in Slack (two per line); links ``<url|label>`` read as their label.
    The result is still Slack mrkdwn (``*bold*``, ``_italic_``, `` `code` ``); see :func:`mrkdwn`.
    """
    lines: list[str] = []
    for block in payload.get("blocks") or []:
        if not isinstance(block, Mapping):
            continue
        if block.get("type") == "divider":
            lines.append("─" * 20)
            continue
        text = block.get("text")
        if isinstance(text, Mapping) and text.get("text"):
            lines.append(str(text["text"]))
        fields = [
            " ".join(str(item["text"]).split("\n"))
            for item in block.get("fields") or []
            if isinstance(item, Mapping) and item.get("text")
        ]
        lines.extend(
            "    ".join(f"{cell:<28}" for cell in fields[i : i + 2]).rstrip()
            for i in range(0, len(fields), 2)
        )
        context = [
            str(item["text"])
            for item in block.get("elements") or []
            if isinstance(item, Mapping) and item.get("text")
        ]
        if context:
            lines.append("  ".join(context))
    if not lines:
        for attachment in payload.get("attachments") or []:
            if isinstance(attachment, Mapping):
                lines.extend(str(attachment[k]) for k in ("title", "text") if attachment.get(k))
    if not lines and payload.get("text"):
        lines.append(str(payload["text"]))
    return _SLACK_LINK_RE.sub(lambda m: m.group(2), "\n".join(lines))


# Slack styles *bold*, _italic_ and `code` only between word boundaries: comms_operation_x stays as is.
_MRKDWN_RE: Final = re.compile(r"((?<!\w)\*[^*\n]+\*(?!\w)|(?<!\w)_[^_\n]+_(?!\w)|`[^`\n]+`)")
_MRKDWN_STYLES: Final = {"*": "bold", "_": "italic", "`": "cyan"}


def mrkdwn(text: str) -> Text:
    """Slack mrkdwn as styled text: the markers go, their style stays (plain text keeps the words)."""
    out = Text()
    for piece in _MRKDWN_RE.split(text):
        if len(piece) > 2 and piece[0] == piece[-1] and piece[0] in _MRKDWN_STYLES:
            out.append(piece[1:-1], style=_MRKDWN_STYLES[piece[0]])
        else:
            out.append(piece)
    return out


def _order(detail_type: str) -> int:
    kinds = list(_STYLES)
    kind = short_detail_type(detail_type)
    return kinds.index(kind) if kind in kinds else len(kinds)


def _longest(text: str) -> int:
    return max((len(line) for line in text.splitlines()), default=0)


def clip_lines(text: str, limit: int) -> str:
    """At most ``limit`` lines, with a note of how many were left out."""
    lines = text.splitlines()
    if len(lines) <= limit:
        return text
    return "\n".join([*lines[:limit], f"… ({len(lines) - limit} more lines)"])


@dataclass(frozen=True)
class TimelineEvent:
    """One event as it crossed the bus. ``at`` is the API clock (simulated time) when it happened."""

    at: str
    detail_type: str
    operation: str
    detail: Mapping[str, Any]


@dataclass(frozen=True)
class AlertView:
    """One alert as delivered: ``channel`` is ``slack`` or ``sns``; ``title`` the SNS subject, if any."""

    at: str
    channel: str
    operation: str
    title: str
    body: str


@dataclass(frozen=True)
class OperationRow:
    """One line of the closing summary."""

    name: str
    operation_id: str
    status_path: Sequence[str]
    events: Mapping[str, int]
    alerts: Mapping[str, int]
    problems: Sequence[str] = field(default_factory=tuple)


def format_event_line(event: TimelineEvent, *, operation_width: int = OPERATION_WIDTH) -> Text:
    kind = short_detail_type(event.detail_type)
    style = _STYLES.get(kind, "")
    line = Text()
    line.append(f"{event.at}  ", style="dim")
    line.append(f"{kind:<17} ", style=style)
    line.append(f"{event.operation[:operation_width]:<{operation_width}} ", style="bold")
    line.append(f"{describe_transition(event.detail_type, event.detail):<22} ", style=style)
    line.append(describe_counters(event.detail_type, event.detail))
    return line


class Timeline:
    """The live view: header, one line per event, a panel per alert, progress, the closing summary."""

    def __init__(self, console: Console) -> None:
        self.console = console
        # Widened for labels that name the account too (``globex/flash-sale``, the multi-account demo).
        self.operation_width = OPERATION_WIDTH
        self._progress: Progress | None = None
        self._task: Any = None
        self._total = 0
        self._alerted: set[tuple[str, str]] = set()

    # -- header and sections -------------------------------------------------------------------

    def title(self, text: str) -> None:
        self.console.print(Text(text, style="bold"))

    def setup_line(self, label: str, value: str) -> None:
        line = Text("  ")
        line.append(f"{label:<12}", style="dim")
        line.append(value)
        self.console.print(line)

    def note(self, text: str) -> None:
        self.console.print(Text(text, style="dim"))

    def blank(self) -> None:
        self.console.print()

    # -- the live part ---------------------------------------------------------------------------

    def event(self, event: TimelineEvent) -> None:
        # One line per event, however long: a transcript or a pipe keeps one event per line.
        self.console.print(format_event_line(event, operation_width=self.operation_width), soft_wrap=True)

    def alert(self, alert: AlertView) -> None:
        """The first alert of an operation on a channel in full (its first lines); later ones, which the
        same operation's later events trigger, as one line."""
        channel = "Slack" if alert.channel == "slack" else "SNS mail"
        style = "red" if alert.channel == "slack" else "yellow"
        first_line = alert.title or next((line for line in alert.body.splitlines() if line.strip()), "")
        if (alert.channel, alert.operation) in self._alerted:
            line = Text(f"{alert.at}  ", style="dim")
            line.append(f"{channel} again ", style=style)
            line.append(f"{alert.operation}: ", style="bold")
            line.append_text(mrkdwn(first_line) if alert.channel == "slack" else Text(first_line))
            self.console.print(line)
            return
        self._alerted.add((alert.channel, alert.operation))
        if alert.channel == "slack":
            body = mrkdwn(clip_lines(alert.body, ALERT_LINES))
        else:
            body = Text()
            if alert.title:
                body.append("Subject: ", style="bold")
                body.append(alert.title + "\n\n")
            body.append(clip_lines(alert.body, ALERT_LINES))
        panel = Panel(
            body,
            title=escape(f"{alert.at}  {channel} · {alert.operation}"),
            title_align="left",
            border_style=style,
            box=box.ROUNDED,
            expand=False,
            padding=(0, 1),
            width=min(self.console.width, ALERT_WIDTH) if _longest(body.plain) > ALERT_WIDTH else None,
        )
        self.console.print(panel)

    def start_progress(self, total_ticks: int, description: str) -> None:
        self._total = total_ticks
        if self.console.is_terminal:
            self._progress = Progress(
                TextColumn("[dim]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("polls"),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self._task = self._progress.add_task(escape(description), total=total_ticks)
            self._progress.start()

    def advance(self, done: int, clock_text: str) -> None:
        """Progress after ``done`` polls. Without a terminal: a plain line at each tenth of the run."""
        if self._progress is not None:
            self._progress.update(self._task, completed=done, description=escape(f"API clock {clock_text}"))
            return
        step = max(1, self._total // 10)
        if done % step == 0 or done == self._total:
            self.note(f"       … {done}/{self._total} polls, API clock {clock_text}")

    def stop_progress(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    # -- closing ---------------------------------------------------------------------------------

    def summary(self, rows: Iterable[OperationRow], *, wall_seconds: float, polls: int) -> None:
        table = Table(
            title=f"Summary: {polls} polls in {wall_seconds:.1f} s",
            box=box.SIMPLE_HEAVY,
            title_justify="left",
            show_lines=False,
        )
        table.add_column("operation", style="bold", no_wrap=True)
        table.add_column("status path")
        table.add_column("events")
        table.add_column("alerts", no_wrap=True)
        table.add_column("check", no_wrap=True)
        for row in rows:
            path = f" {_ARROW} ".join(row.status_path) or "-"
            events = ", ".join(
                f"{row.events[k]} {short_detail_type(k).split()[0].lower()}"
                for k in sorted(row.events, key=_order)
                if row.events[k]
            )
            alerts = ", ".join(f"{k} {v}" for k, v in row.alerts.items() if v) or "-"
            check = Text("ok", style="green") if not row.problems else Text("FAILED", style="bold red")
            table.add_row(escape(row.name), escape(path), escape(events or "-"), alerts, check)
        self.console.print(table)

    def next_steps(self, steps: Sequence[tuple[str, str]]) -> None:
        """A short "Next:" list: what a person can do after a run that passed."""
        self.console.print()
        self.console.print(Text("Next:", style="bold"))
        width = max(len(label) for label, _ in steps)
        for label, what in steps:
            self.console.print(Text(f"  {label + ':':<{width + 1}}  {what}"), soft_wrap=True)

    def verdict(self, problems: Sequence[str], *, story: bool = True) -> None:
        """The last line; ``story`` False: a scenario without a script, only the generic checks ran."""
        if not problems:
            text = (
                "The pipeline produced everything the story expects."
                if story
                else "The pipeline passed the generic checks (handler invocations, event schemas)."
            )
            self.console.print(Text(text, style="bold green"))
            return
        heading = "The pipeline did NOT produce what the story expects:" if story else "The pipeline failed:"
        self.console.print(Text(heading, style="bold red"))
        for problem in problems:
            self.console.print(Text(f"  - {problem}", style="red"))
