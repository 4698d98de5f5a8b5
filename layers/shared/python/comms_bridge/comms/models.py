"""Pydantic models of the Comms API resources comms-bridge reads.

Reading is tolerant: unknown fields are ignored everywhere. A page is parsed item
by item, so one malformed operation becomes a ``SkippedItem`` with its reason and
the rest of the page is still returned.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator

OPERATION_ID_PATTERN: Final = r"^comms_operation_[0-7][a-hjkmnpqrstv-z0-9]{25,34}$"
_OPERATION_ID_RE: Final = re.compile(OPERATION_ID_PATTERN)
TIMESTAMP_CACHE_SIZE: Final = 8192
"""Parsed timestamps kept (each ~200 bytes): the timestamps of a few pages, so memory stays bounded."""

STAT_FIELDS: Final[tuple[str, ...]] = (
    "total",
    "recipients",
    "attempts",
    "scheduled",
    "queued",
    "sent",
    "delivered",
    "opened",
    "undelivered",
    "failed",
    "canceled",
)


def is_operation_id(value: str) -> bool:
    return _OPERATION_ID_RE.fullmatch(value) is not None


@lru_cache(maxsize=TIMESTAMP_CACHE_SIZE)
def parse_timestamp(value: str) -> datetime:
    """Parse an RFC 3339 timestamp as Twilio sends it (``2024-06-20T10:15:30Z``) to an aware UTC datetime.

    Cached: a run reads the same few thousand strings again and again (validation, the clock bound, the
    candidate test, bucket counts), and a datetime is immutable."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no UTC offset")
    return parsed.astimezone(UTC)


def format_timestamp(value: datetime) -> str:
    """Format an aware datetime the way Twilio does: UTC, second precision, ``Z`` suffix."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class OperationStatus(StrEnum):
    SCHEDULED = "SCHEDULED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    CANCELED = "CANCELED"

    @property
    def terminal(self) -> bool:
        return self in (OperationStatus.COMPLETED, OperationStatus.CANCELED)

    @property
    def rank(self) -> int:
        """Statuses only move forward: SCHEDULED, PROCESSING, then COMPLETED or CANCELED (both final)."""
        return 2 if self.terminal else 0 if self is OperationStatus.SCHEDULED else 1


_COUNTER = Field(ge=0)


class EmailOperationStats(BaseModel):
    """The 11 counters of an Email Operation. Strict integers: ``"5"`` is a malformed item, not 5.

    ``recipients`` and ``attempts`` are missing from one Twilio doc example, so they default to 0;
    every other counter is required.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    total: StrictInt = _COUNTER
    recipients: StrictInt = Field(default=0, ge=0)
    attempts: StrictInt = Field(default=0, ge=0)
    scheduled: StrictInt = _COUNTER
    queued: StrictInt = _COUNTER
    sent: StrictInt = _COUNTER
    delivered: StrictInt = _COUNTER
    opened: StrictInt = _COUNTER
    undelivered: StrictInt = _COUNTER
    failed: StrictInt = _COUNTER
    canceled: StrictInt = _COUNTER

    def as_dict(self) -> dict[str, int]:
        return {name: int(getattr(self, name)) for name in STAT_FIELDS}


class EmailOperation(BaseModel):
    """One Email Operation. Timestamps keep the exact string Twilio sent; ``created``/``updated`` parse it."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    id: str = Field(pattern=OPERATION_ID_PATTERN)
    status: OperationStatus
    stats: EmailOperationStats
    created_at: str = Field(alias="createdAt")
    updated_at: str = Field(alias="updatedAt")

    @field_validator("created_at", "updated_at")
    @classmethod
    def _rfc3339(cls, value: str) -> str:
        parse_timestamp(value)
        return value

    @property
    def created(self) -> datetime:
        return parse_timestamp(self.created_at)

    @property
    def updated(self) -> datetime:
        return parse_timestamp(self.updated_at)

    def to_api_dict(self) -> dict[str, Any]:
        """The operation in the API's own JSON shape (camelCase)."""
        return self.model_dump(mode="json", by_alias=True)


class SkippedItem(BaseModel):
    """An item of a list response that failed validation and was left out."""

    model_config = ConfigDict(frozen=True)

    index: int
    item_id: str | None
    reason: str


class Pagination(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    next: str | None = None
    self_token: str | None = Field(default=None, alias="self")


class OperationsPage(BaseModel):
    """One page of ``GET /Emails/Operations``: the valid operations, the skipped items, the next token."""

    model_config = ConfigDict(frozen=True)

    operations: list[EmailOperation]
    skipped: list[SkippedItem]
    next_token: str | None
    self_token: str | None


class OperationError(BaseModel):
    """One item of ``GET /Emails/Operations/{id}/Errors`` (shape assumed by contract §5; all optional)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    code: StrictInt | None = None
    message: str | None = None
    email_id: str | None = Field(default=None, alias="emailId")
    recipient: str | None = None


class OperationErrorsPage(BaseModel):
    model_config = ConfigDict(frozen=True)

    errors: list[OperationError]
    skipped: list[SkippedItem]
    next_token: str | None
    self_token: str | None


class ApiErrorDetail(BaseModel):
    """One entry of the Comms API error envelope ``{"errors": [{code, message, infoUrl, context}]}``."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    code: int | None = None
    message: str | None = None
    info_url: str | None = Field(default=None, alias="infoUrl")
    context: str | None = None


class ApiErrorEnvelope(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    errors: list[ApiErrorDetail] = Field(default_factory=list)


class MalformedResponseError(ValueError):
    """The response as a whole does not have the documented shape (not JSON, no list, no pagination)."""


def describe_invalid(error: ValidationError) -> str:
    """``loc: msg`` of every problem; pydantic's default rendering would repeat the input values."""
    parts = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "<item>"
        parts.append(f"{location}: {item['msg']}")
    return "; ".join(parts)


def _item_id(raw: object) -> str | None:
    if isinstance(raw, dict):
        value = raw.get("id")
        return value if isinstance(value, str) else None
    return None


def _pagination(payload: dict[str, Any]) -> Pagination:
    raw = payload.get("pagination")
    if not isinstance(raw, dict):
        raise MalformedResponseError("response has no 'pagination' object")
    try:
        return Pagination.model_validate(raw)
    except ValidationError as exc:
        raise MalformedResponseError(f"bad 'pagination': {describe_invalid(exc)}") from exc


def _items(payload: object, key: str) -> tuple[dict[str, Any], list[Any]]:
    if not isinstance(payload, dict):
        raise MalformedResponseError(f"response is {type(payload).__name__}, not a JSON object")
    items = payload.get(key)
    if not isinstance(items, list):
        raise MalformedResponseError(f"response has no '{key}' list")
    return payload, items


def not_credible(operation: EmailOperation, latest: datetime | None) -> str | None:
    """Why ``operation`` cannot be believed (None: it can): a ``createdAt`` or ``updatedAt`` later than
    ``latest``, the API's clock plus ``MAX_CLOCK_SKEW_SECONDS`` (contract §6). Stored, such a version would
    make every real later one look older than it."""
    if latest is None:
        return None
    for name, moment, text in (
        ("updatedAt", operation.updated, operation.updated_at),
        ("createdAt", operation.created, operation.created_at),
    ):
        if moment > latest:
            return f"{name} {text} is later than the API's clock allows (after {format_timestamp(latest)})"
    return None


def parse_operations_page(payload: object, *, latest: datetime | None = None) -> OperationsPage:
    """Validate a list response item by item; raise ``MalformedResponseError`` only for a broken envelope.
    An operation :func:`not_credible` at ``latest`` is skipped like an invalid one."""
    body, items = _items(payload, "operations")
    pagination = _pagination(body)
    operations: list[EmailOperation] = []
    skipped: list[SkippedItem] = []
    for index, raw in enumerate(items):
        try:
            operation = EmailOperation.model_validate(raw)
        except ValidationError as exc:
            skipped.append(SkippedItem(index=index, item_id=_item_id(raw), reason=describe_invalid(exc)))
            continue
        reason = not_credible(operation, latest)
        if reason is None:
            operations.append(operation)
        else:
            skipped.append(SkippedItem(index=index, item_id=operation.id, reason=reason))
    return OperationsPage(
        operations=operations, skipped=skipped, next_token=pagination.next, self_token=pagination.self_token
    )


def parse_operation_errors_page(payload: object) -> OperationErrorsPage:
    body, items = _items(payload, "errors")
    pagination = _pagination(body)
    errors: list[OperationError] = []
    skipped: list[SkippedItem] = []
    for index, raw in enumerate(items):
        try:
            errors.append(OperationError.model_validate(raw))
        except ValidationError as exc:
            skipped.append(SkippedItem(index=index, item_id=None, reason=describe_invalid(exc)))
    return OperationErrorsPage(
        errors=errors, skipped=skipped, next_token=pagination.next, self_token=pagination.self_token
    )
