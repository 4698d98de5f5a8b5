"""``eventKey``: deterministic, so the same observation of the same change always gives the same key
(contract §3); consumers dedupe on it. 32 hex characters of sha256."""

from __future__ import annotations

import hashlib
from typing import Final

from comms_bridge.comms.models import EmailOperationStats, OperationStatus

# 128 bits of sha256: collisions are out of reach and the key stays short enough to read in logs.
EVENT_KEY_HEX_CHARS: Final = 32


EVENT_KEY_PATTERN: Final = rf"^[0-9a-f]{{{EVENT_KEY_HEX_CHARS}}}$"


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


def summary_event_key(trigger_event_key: str) -> str:
    """Deterministic: one triggering event always gives the same summary key (consumers dedupe on it).
    Same shape as the poller's keys: 32 hex characters of sha256."""
    return hashlib.sha256(f"errors\x1f{trigger_event_key}".encode()).hexdigest()[:32]
