"""The *Errors Summarized* summary: what the enricher found for one triggering event (contract §3).

It round-trips through a plain dict (``to_record``/``from_record``) so it can be stored in the idempotency
record and replayed unchanged on a Lambda retry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from comms_bridge.comms.models import STAT_FIELDS, EmailOperationStats
from comms_bridge.enricher.grouping import ErrorGroup
from comms_bridge.events.detail_types import SCHEMA_VERSION, DetailType
from comms_bridge.events.details import stats_rates
from comms_bridge.events.keys import summary_event_key


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
