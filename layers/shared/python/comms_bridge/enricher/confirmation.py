"""The trigger is a claim, not a fact (contract §6): what the Comms API says decides whether anyone is
alerted.

:func:`confirm` is pure: it takes the trigger, the operation as the API returned it (``None`` for a 404),
the account the credentials belong to and the API's clock, and either returns the operation as the alert
must show it (:class:`ConfirmedOperation`) or raises :class:`TriggerNotConfirmed` naming why. A failure
trigger is confirmed when the API's own numbers meet both thresholds of the rule (``FAILED_COUNT_THRESHOLD``,
``FAILED_RATE_THRESHOLD``, contract §2) on a COMPLETED operation; a stall when the operation is still
PROCESSING, its ``updatedAt`` is the one the stall was reported for, and it has not moved for
``STALL_AFTER_SECONDS`` on the API's clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from comms_bridge.comms.models import (
    STAT_FIELDS,
    EmailOperation,
    OperationStatus,
    format_timestamp,
    parse_timestamp,
)
from comms_bridge.enricher.trigger import TriggerEvent
from comms_bridge.events.details import stats_rates


class Unconfirmed(StrEnum):
    """Why the API did not confirm a trigger (the ``reason`` logged with ``UnconfirmedTriggers``)."""

    FOREIGN_ACCOUNT = "foreign_account"
    UNKNOWN_OPERATION = "unknown_operation"
    NOT_COMPLETED = "not_completed"
    BELOW_THRESHOLDS = "below_thresholds"
    NOT_PROCESSING = "not_processing"
    MOVED_SINCE = "moved_since"
    NOT_STALLED_YET = "not_stalled_yet"


class TriggerNotConfirmed(Exception):
    def __init__(self, reason: Unconfirmed, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Thresholds:
    """The rule's two thresholds; a failure alert needs both (``>=``, as the rule's numeric filters)."""

    failed_count: float
    failed_rate: float

    def met_by(self, operation: EmailOperation) -> bool:
        # The rate as the poller publishes it (rounded to 4 decimals): the number the rule matched on.
        rate = stats_rates(operation.stats)["failed"]
        return operation.stats.failed >= self.failed_count and rate >= self.failed_rate


@dataclass(frozen=True)
class ConfirmedOperation:
    """What the alert shows: the API's status and stats, the credentials' account."""

    account_sid: str
    operation_id: str
    status: str
    stats: Mapping[str, int]
    updated_at: str
    api_time: str
    stalled_for_seconds: int | None = None

    def to_record(self) -> dict[str, Any]:
        return {
            "accountSid": self.account_sid,
            "operationId": self.operation_id,
            "status": self.status,
            "stats": dict(self.stats),
            "updatedAt": self.updated_at,
            "apiTime": self.api_time,
            "stalledForSeconds": self.stalled_for_seconds,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ConfirmedOperation:
        stalled = record.get("stalledForSeconds")
        return cls(
            account_sid=str(record["accountSid"]),
            operation_id=str(record["operationId"]),
            status=str(record["status"]),
            stats={name: int(record["stats"][name]) for name in STAT_FIELDS},
            updated_at=str(record["updatedAt"]),
            api_time=str(record["apiTime"]),
            stalled_for_seconds=None if stalled is None else int(stalled),
        )


def check_account(trigger: TriggerEvent, account_sid: str) -> None:
    """Before any request: a trigger about another account is not ours to confirm or alert."""
    if trigger.detail.account_sid != account_sid:
        raise TriggerNotConfirmed(
            Unconfirmed.FOREIGN_ACCOUNT,
            "the trigger names another account than the one the credentials belong to",
        )


def confirm(
    trigger: TriggerEvent,
    operation: EmailOperation | None,
    *,
    account_sid: str,
    thresholds: Thresholds,
    stall_after_seconds: int,
    api_now: datetime,
) -> ConfirmedOperation:
    """The operation as the alert must show it, or :class:`TriggerNotConfirmed`."""
    check_account(trigger, account_sid)
    if operation is None:
        raise TriggerNotConfirmed(Unconfirmed.UNKNOWN_OPERATION, "the Comms API does not know the operation")
    stalled_for: int | None = None
    if trigger.is_stall:
        stalled_for = _confirm_stall(trigger, operation, stall_after_seconds, api_now)
    else:
        _confirm_failure(operation, thresholds)
    return ConfirmedOperation(
        account_sid=account_sid,
        operation_id=operation.id,
        status=operation.status.value,
        stats=operation.stats.as_dict(),
        updated_at=operation.updated_at,
        api_time=format_timestamp(api_now),
        stalled_for_seconds=stalled_for,
    )


def _confirm_failure(operation: EmailOperation, thresholds: Thresholds) -> None:
    if operation.status is not OperationStatus.COMPLETED:
        raise TriggerNotConfirmed(
            Unconfirmed.NOT_COMPLETED, f"the Comms API says the operation is {operation.status.value}"
        )
    if not thresholds.met_by(operation):
        rate = stats_rates(operation.stats)["failed"]
        raise TriggerNotConfirmed(
            Unconfirmed.BELOW_THRESHOLDS,
            f"the Comms API counts {operation.stats.failed} failed of {operation.stats.total} ({rate:.4f}), "
            f"below FAILED_COUNT_THRESHOLD {thresholds.failed_count:g} or "
            f"FAILED_RATE_THRESHOLD {thresholds.failed_rate:g}",
        )


def _confirm_stall(
    trigger: TriggerEvent, operation: EmailOperation, stall_after_seconds: int, api_now: datetime
) -> int:
    if operation.status is not OperationStatus.PROCESSING:
        raise TriggerNotConfirmed(
            Unconfirmed.NOT_PROCESSING, f"the Comms API says the operation is {operation.status.value}"
        )
    claimed = trigger.detail.updated_at
    if claimed is None or not _same_instant(claimed, operation.updated):
        raise TriggerNotConfirmed(
            Unconfirmed.MOVED_SINCE, "the operation's updatedAt is not the one the stall was reported for"
        )
    stalled_for = int((api_now - operation.updated).total_seconds())
    if stalled_for < stall_after_seconds:
        raise TriggerNotConfirmed(
            Unconfirmed.NOT_STALLED_YET,
            f"by the Comms API's clock the operation has not moved for {stalled_for} s only, "
            f"less than STALL_AFTER_SECONDS {stall_after_seconds}",
        )
    return stalled_for


def _same_instant(claimed: str, actual: datetime) -> bool:
    try:
        return parse_timestamp(claimed) == actual
    except ValueError:
        return False
