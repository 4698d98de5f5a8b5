"""The ``detail`` of the poller's three events (contract §3), built from plain values, no I/O.

Every number in a detail is a JSON number: counters and deltas stay ``int``, rates are ``float``.
The dicts returned here are ready for ``json.dumps`` as they are.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from comms_bridge.comms.models import STAT_FIELDS, EmailOperationStats, OperationStatus, format_timestamp
from comms_bridge.events.detail_types import SCHEMA_VERSION

RATE_FIELDS: Final[tuple[str, ...]] = ("delivered", "opened", "undelivered", "failed", "canceled")
RATE_DECIMALS: Final = 4


# EventBridge PutEvents counts an entry's Time as 14 bytes when present; the publisher may set it.
_PUT_EVENTS_TIME_BYTES: Final = 14


def stats_delta(stats: EmailOperationStats, previous: EmailOperationStats | None) -> dict[str, int]:
    current = stats.as_dict()
    if previous is None:
        return current
    before = previous.as_dict()
    return {name: current[name] - before[name] for name in STAT_FIELDS}


def stats_rates(stats: EmailOperationStats) -> dict[str, float]:
    total = stats.total
    return {
        name: (round(getattr(stats, name) / total, RATE_DECIMALS) if total else 0.0) for name in RATE_FIELDS
    }


def build_detail(
    *,
    event_key: str,
    account_sid: str,
    operation_id: str,
    status: OperationStatus,
    previous_status: OperationStatus | None,
    stats: EmailOperationStats,
    previous_stats: EmailOperationStats | None,
    created_at: str,
    updated_at: str,
    observed_at: datetime,
    stalled_for_seconds: int | None = None,
) -> dict[str, Any]:
    """The ``detail`` of contract §3, field for field; ``stalledForSeconds`` only for *Stalled*."""
    detail: dict[str, Any] = {
        "schemaVersion": SCHEMA_VERSION,
        "eventKey": event_key,
        "accountSid": account_sid,
        "operationId": operation_id,
        "status": status.value,
        "previousStatus": None if previous_status is None else previous_status.value,
        "stats": stats.as_dict(),
        "previousStats": None if previous_stats is None else previous_stats.as_dict(),
        "delta": stats_delta(stats, previous_stats),
        "rates": stats_rates(stats),
        "terminal": status.terminal,
        "createdAt": created_at,
        "updatedAt": updated_at,
        "observedAt": format_timestamp(observed_at),
    }
    if stalled_for_seconds is not None:
        detail["stalledForSeconds"] = stalled_for_seconds
    return detail


def detail_json(detail: Mapping[str, Any]) -> str:
    """The compact JSON text sent as ``Detail`` (and counted by :func:`entry_size_bytes`)."""
    return json.dumps(detail, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def entry_size_bytes(
    detail_type: str, detail: Mapping[str, Any], *, source: str, resources: Sequence[str] = ()
) -> int:
    """Size of a PutEvents entry as EventBridge counts it (Time + Source + DetailType + Detail +
    Resources, UTF-8), to keep each entry and batch under the 256 KB limit."""
    size = _PUT_EVENTS_TIME_BYTES
    size += len(source.encode("utf-8")) + len(detail_type.encode("utf-8"))
    size += len(detail_json(detail).encode("utf-8"))
    size += sum(len(resource.encode("utf-8")) for resource in resources)
    return size
