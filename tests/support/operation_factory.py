"""Build valid Email Operations and clocks for change-detection tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from comms_bridge.comms.models import (
    STAT_FIELDS,
    EmailOperation,
    EmailOperationStats,
    OperationStatus,
    format_timestamp,
)

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
OPERATION_ID = "comms_operation_01j9x4k8m2n3p5q6r7s8t9v0w1"
T0 = datetime(2024, 6, 20, 10, 0, 0, tzinfo=UTC)
_ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def operation_id(n: int) -> str:
    """A valid, distinct operation id for each ``n`` (base-32 in the id alphabet, padded to 26 chars)."""
    digits = ""
    value = n
    while True:
        value, rest = divmod(value, 32)
        digits = _ID_ALPHABET[rest] + digits
        if not value:
            break
    return "comms_operation_0" + digits.rjust(25, "a")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def ts(seconds: float) -> str:
    return format_timestamp(at(seconds))


def stats(**counters: int) -> EmailOperationStats:
    values = dict.fromkeys(STAT_FIELDS, 0)
    values.update(counters)
    return EmailOperationStats(**values)


def operation(
    status: OperationStatus | str = OperationStatus.PROCESSING,
    *,
    updated: float = 60,
    created: float = 0,
    op_id: str = OPERATION_ID,
    **counters: Any,
) -> EmailOperation:
    return EmailOperation(
        id=op_id,
        status=OperationStatus(status),
        stats=stats(**counters),
        created_at=ts(created),
        updated_at=ts(updated),
    )


def ten_recipients(
    n: int, status: str, *, created: float, updated: float, sent: int = 0, opened: int = 0
) -> EmailOperation:
    """Operation ``n`` of 10 recipients, ``sent`` of them sent and delivered; ``created``/``updated``:
    seconds from the API clock's start."""
    return operation(
        status,
        op_id=operation_id(n),
        created=created,
        updated=updated,
        total=10,
        recipients=10,
        queued=10 - sent,
        sent=sent,
        delivered=sent,
        opened=opened,
    )
