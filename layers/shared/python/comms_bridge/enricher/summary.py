"""The *Errors Summarized* summary: what the enricher found for one triggering event (contract §3).

It round-trips through a plain dict (``to_record``/``from_record``) so it can be stored in the idempotency
record and replayed unchanged on a Lambda retry."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from comms_bridge.comms.models import STAT_FIELDS, EmailOperationStats
from comms_bridge.enricher.grouping import ErrorGroup, clip
from comms_bridge.events.detail_types import SCHEMA_VERSION, DetailType
from comms_bridge.events.details import entry_size_bytes, stats_rates
from comms_bridge.events.keys import summary_event_key

MAX_ENTRY_BYTES: Final = 256 * 1024
"""EventBridge's limit for one PutEvents entry (contract §4)."""
MIN_MESSAGE_CHARS: Final = 100


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


def fit_summary(summary: ErrorsSummary, *, source: str, limit: int = MAX_ENTRY_BYTES) -> ErrorsSummary:
    """``summary`` shrunk until its event fits ``limit`` bytes: first fewer sample ids per group, then
    shorter messages (halved, down to 100 characters), then fewer groups (the least frequent go first).
    The counts (``errorCount``, ``truncated``) stay as read. Bounded inputs make this a no-op in practice;
    it is what keeps the contract's size guarantee whatever the API returns."""

    def size(candidate: ErrorsSummary) -> int:
        return entry_size_bytes(ERRORS_SUMMARIZED, candidate.detail(), source=source)

    fitted = summary
    for shrink in (_fewer_samples, _shorter_messages, _fewer_groups):
        while size(fitted) > limit:
            smaller = shrink(fitted)
            if smaller is None:
                break
            fitted = smaller
    return fitted


def _each_group(
    summary: ErrorsSummary, change: Callable[[ErrorGroup], ErrorGroup | None]
) -> ErrorsSummary | None:
    groups = [change(group) for group in summary.groups]
    if all(group is None for group in groups):
        return None
    kept = tuple(new if new is not None else old for new, old in zip(groups, summary.groups, strict=True))
    return replace(summary, groups=kept)


def _fewer_samples(summary: ErrorsSummary) -> ErrorsSummary | None:
    def drop_one(group: ErrorGroup) -> ErrorGroup | None:
        if not group.sample_email_ids:
            return None
        return replace(group, sample_email_ids=group.sample_email_ids[:-1])

    return _each_group(summary, drop_one)


def _shorter_messages(summary: ErrorsSummary) -> ErrorsSummary | None:
    def halve(group: ErrorGroup) -> ErrorGroup | None:
        if group.message is None or len(group.message) <= MIN_MESSAGE_CHARS:
            return None
        return replace(group, message=clip(group.message, max(len(group.message) // 2, MIN_MESSAGE_CHARS)))

    return _each_group(summary, halve)


def _fewer_groups(summary: ErrorsSummary) -> ErrorsSummary | None:
    if not summary.groups:
        return None
    return replace(summary, groups=summary.groups[:-1])
