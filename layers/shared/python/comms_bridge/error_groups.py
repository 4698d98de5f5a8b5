"""Grouping an operation's errors and the summary built from them (contract §3, *Errors Summarized*).

Pure code, no I/O: the enricher feeds pages of ``OperationError`` in, the renderers and the publisher read
the ``ErrorsSummary`` out. The summary round-trips through a plain dict (``to_record``/``from_record``) so
it can be stored in the idempotency record and replayed unchanged on a Lambda retry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from comms_bridge.models import STAT_FIELDS, EmailOperationStats, OperationError
from comms_bridge.poller_events import SCHEMA_VERSION, DetailType, stats_rates

MAX_GROUPS: Final = 20
"""Contract §3: at most 20 groups in the event."""
MAX_SAMPLES: Final = 5
MAX_MESSAGE_CHARS: Final = 1000
"""Messages are cut here before grouping: 20 groups of unbounded text could exceed EventBridge's 256 KB."""
ELLIPSIS: Final = "…"


def clip(text: str, limit: int, ellipsis: str = ELLIPSIS) -> str:
    """``text`` cut to at most ``limit`` characters, marking the cut with ``ellipsis``."""
    if len(text) <= limit:
        return text
    keep = max(limit - len(ellipsis), 0)
    return text[:keep] + ellipsis[: limit - keep]


@dataclass(frozen=True)
class ErrorGroup:
    code: int | None
    message: str | None
    count: int
    sample_email_ids: tuple[str, ...] = ()

    def to_detail(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "count": self.count,
            "sampleEmailIds": list(self.sample_email_ids),
        }

    @classmethod
    def from_detail(cls, value: Mapping[str, Any]) -> ErrorGroup:
        return cls(
            code=value["code"],
            message=value["message"],
            count=int(value["count"]),
            sample_email_ids=tuple(value["sampleEmailIds"]),
        )


@dataclass
class _Bucket:
    first_seen: int
    count: int = 0
    samples: list[str] = field(default_factory=list)


class ErrorTally:
    """Counts errors by ``(code, message)``. Ties in count keep the order the API listed them in, so the
    same errors always give the same groups."""

    def __init__(self, *, max_samples: int = MAX_SAMPLES, max_message_chars: int = MAX_MESSAGE_CHARS) -> None:
        self._max_samples = max_samples
        self._max_message_chars = max_message_chars
        self._buckets: dict[tuple[int | None, str | None], _Bucket] = {}
        self.total = 0

    def add(self, error: OperationError) -> None:
        message = None if error.message is None else clip(error.message, self._max_message_chars)
        key = (error.code, message)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(first_seen=len(self._buckets))
        bucket.count += 1
        self.total += 1
        email_id = error.email_id
        if email_id and len(bucket.samples) < self._max_samples and email_id not in bucket.samples:
            bucket.samples.append(email_id)

    def extend(self, errors: Iterable[OperationError]) -> None:
        for error in errors:
            self.add(error)

    @property
    def distinct(self) -> int:
        return len(self._buckets)

    def groups(self, limit: int = MAX_GROUPS) -> list[ErrorGroup]:
        """The ``limit`` most frequent groups, most frequent first."""
        ranked = sorted(self._buckets.items(), key=lambda item: (-item[1].count, item[1].first_seen))
        return [
            ErrorGroup(code=code, message=message, count=bucket.count, sample_email_ids=tuple(bucket.samples))
            for (code, message), bucket in ranked[:limit]
        ]


def group_errors(
    errors: Iterable[OperationError], *, limit: int = MAX_GROUPS, max_samples: int = MAX_SAMPLES
) -> list[ErrorGroup]:
    tally = ErrorTally(max_samples=max_samples)
    tally.extend(errors)
    return tally.groups(limit)


def summary_event_key(trigger_event_key: str) -> str:
    """Deterministic: one triggering event always gives the same summary key (consumers dedupe on it).
    Same shape as the poller's keys: 32 hex characters of sha256."""
    return hashlib.sha256(f"errors\x1f{trigger_event_key}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class ErrorsSummary:
    """What the enricher found for one triggering event.

    ``note`` and ``distinct_groups`` are for the alerts only: the published detail carries exactly the
    fields of contract §3.
    """

    trigger_event_key: str
    trigger_detail_type: str
    account_sid: str
    operation_id: str
    status: str
    stats: Mapping[str, int]
    error_count: int
    truncated: bool
    groups: tuple[ErrorGroup, ...]
    distinct_groups: int
    note: str | None = None

    @property
    def event_key(self) -> str:
        return summary_event_key(self.trigger_event_key)

    @property
    def rates(self) -> dict[str, float]:
        return stats_rates(EmailOperationStats.model_validate(dict(self.stats)))

    def detail(self) -> dict[str, Any]:
        """The ``detail`` of *Email Operation Errors Summarized*, field for field as contract §3 lists it."""
        return {
            "schemaVersion": SCHEMA_VERSION,
            "eventKey": self.event_key,
            "accountSid": self.account_sid,
            "operationId": self.operation_id,
            "status": self.status,
            "stats": {name: int(self.stats[name]) for name in STAT_FIELDS},
            "errorCount": self.error_count,
            "truncated": self.truncated,
            "errorGroups": [group.to_detail() for group in self.groups],
            "trigger": {"detailType": self.trigger_detail_type, "eventKey": self.trigger_event_key},
        }

    def to_record(self) -> dict[str, Any]:
        return {"detail": self.detail(), "distinctGroups": self.distinct_groups, "note": self.note}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ErrorsSummary:
        detail = record["detail"]
        return cls(
            trigger_event_key=detail["trigger"]["eventKey"],
            trigger_detail_type=detail["trigger"]["detailType"],
            account_sid=detail["accountSid"],
            operation_id=detail["operationId"],
            status=detail["status"],
            stats={name: int(detail["stats"][name]) for name in STAT_FIELDS},
            error_count=int(detail["errorCount"]),
            truncated=bool(detail["truncated"]),
            groups=tuple(ErrorGroup.from_detail(group) for group in detail["errorGroups"]),
            distinct_groups=int(record["distinctGroups"]),
            note=record.get("note"),
        )


ERRORS_SUMMARIZED: Final = DetailType.ERRORS_SUMMARIZED.value

# -- wording shared by the Slack and SNS alerts ---------------------------------------------------------

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
