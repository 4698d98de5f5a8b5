"""Building ``ErrorsSummary`` values for the unit tests of grouping and alert rendering."""

from __future__ import annotations

from collections.abc import Mapping

from comms_bridge.enricher.grouping import ErrorGroup
from comms_bridge.enricher.summary import ErrorsSummary

ACCOUNT = "AC" + "0123456789abcdef" * 2
OPERATION = "comms_operation_01h9krwprkeee8fzqspvwy6nq8"
TRIGGER_KEY = "a" * 32


def make_summary(groups: list[ErrorGroup], *, stats: Mapping[str, int], **overrides: object) -> ErrorsSummary:
    values: dict[str, object] = {
        "trigger_event_key": TRIGGER_KEY,
        "trigger_detail_type": "Email Operation Status Changed",
        "account_sid": ACCOUNT,
        "operation_id": OPERATION,
        "status": "COMPLETED",
        "stats": dict(stats),
        "error_count": sum(group.count for group in groups),
        "truncated": False,
        "groups": tuple(groups),
        "distinct_groups": len(groups),
    }
    values.update(overrides)
    return ErrorsSummary(**values)  # type: ignore[arg-type]
