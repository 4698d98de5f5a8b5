"""The ``detail`` of the poller's three events (contract §3), built from plain values, no I/O.

Every number in a detail is a JSON number: counters and deltas stay ``int``, rates are ``float``.
The dicts returned here are ready for ``json.dumps`` as they are.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from comms_bridge.models import STAT_FIELDS, EmailOperationStats, OperationStatus, format_timestamp

SCHEMA_VERSION: Final = "1.0"

RATE_FIELDS: Final[tuple[str, ...]] = ("delivered", "opened", "undelivered", "failed", "canceled")
RATE_DECIMALS: Final = 4

# 128 bits of sha256: collisions are out of reach and the key stays short enough to read in logs.
EVENT_KEY_HEX_CHARS: Final = 32
EVENT_KEY_PATTERN: Final = rf"^[0-9a-f]{{{EVENT_KEY_HEX_CHARS}}}$"

# EventBridge PutEvents counts an entry's Time as 14 bytes when present; the publisher may set it.
_PUT_EVENTS_TIME_BYTES: Final = 14


class DetailType(StrEnum):
    """The only four detail-types of contract §3; a new one is a contract change."""

    STATUS_CHANGED = "Email Operation Status Changed"
    STATS_CHANGED = "Email Operation Stats Changed"
    STALLED = "Email Operation Stalled"
    ERRORS_SUMMARIZED = "Email Operation Errors Summarized"

    @property
    def schema_file(self) -> str:
        """File name of this detail-type's JSON Schema inside ``comms_bridge/schemas/``."""
        return _SCHEMA_FILES[self]


_SCHEMA_FILES: Final[Mapping[DetailType, str]] = {
    DetailType.STATUS_CHANGED: "email-operation-status-changed.json",
    DetailType.STATS_CHANGED: "email-operation-stats-changed.json",
    DetailType.STALLED: "email-operation-stalled.json",
    DetailType.ERRORS_SUMMARIZED: "email-operation-errors-summarized.json",
}

POLLER_DETAIL_TYPES: Final = (DetailType.STATUS_CHANGED, DetailType.STATS_CHANGED, DetailType.STALLED)


def _key(*parts: str) -> str:
    # A separator that cannot occur in ids, statuses or timestamps keeps ("ab","c") and ("a","bc") apart.
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return digest[:EVENT_KEY_HEX_CHARS]


def _stats_fingerprint(stats: EmailOperationStats) -> str:
    return ",".join(f"{name}={value}" for name, value in stats.as_dict().items())


def status_changed_key(account_sid: str, operation_id: str, status: OperationStatus) -> str:
    """Statuses only move forward, so an operation enters each status at most once: the key names the status
    entered, not the one left. A republish after a crash keeps the key of the first publish even when the
    next run observes a newer version (other stats, later ``updatedAt``) or decides against another
    previous status (a stale read in between), so a status is never announced under two keys."""
    return _key("status", account_sid, operation_id, status.value)


def stats_changed_key(
    account_sid: str,
    operation_id: str,
    status: OperationStatus,
    updated_at: str,
    stats: EmailOperationStats,
) -> str:
    """The version reached names the change; the previous stats do not, so a re-decision against older
    state after a crash still yields the key of the first publish."""
    return _key("stats", account_sid, operation_id, status.value, updated_at, _stats_fingerprint(stats))


def stalled_key(account_sid: str, operation_id: str, updated_at: str) -> str:
    """One stall per ``updatedAt`` value: the stall is re-armed exactly when ``updatedAt`` moves."""
    return _key("stalled", account_sid, operation_id, updated_at)


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
