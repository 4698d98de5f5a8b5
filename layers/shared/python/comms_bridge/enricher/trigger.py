"""The event that triggers the errors enricher, as Powertools Parser models.

ErrorsTriggerRule routes *Status Changed* and *Stats Changed* events to the function; anything else that
reaches it (a mis-wired rule, a hand-made test event) is rejected with an error naming the field, before
any alert is sent. Only the fields the enricher uses are required; the rest of the detail is ignored, so a
poller that adds fields does not break it.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from comms_bridge.comms.models import OPERATION_ID_PATTERN, EmailOperationStats, OperationStatus

ACCOUNT_SID_PATTERN: Final = r"^AC[0-9a-fA-F]{32}$"
_SHOWN_VALUE_CHARS: Final = 80


class InvalidTriggerEvent(ValueError):
    """The invocation event is not a trigger this function handles. The message names the fields."""


class TriggerDetail(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    schema_version: str = Field(alias="schemaVersion", pattern=r"^1\.[0-9]+$")
    event_key: str = Field(alias="eventKey", min_length=1, max_length=256)
    account_sid: str = Field(alias="accountSid", pattern=ACCOUNT_SID_PATTERN)
    operation_id: str = Field(alias="operationId", pattern=OPERATION_ID_PATTERN)
    status: OperationStatus
    previous_status: OperationStatus | None = Field(default=None, alias="previousStatus")
    stats: EmailOperationStats
    updated_at: str | None = Field(default=None, alias="updatedAt")


class TriggerEvent(EventBridgeModel):
    """An EventBridge event whose ``detail`` is one of the poller's two trigger detail-types."""

    detail_type: Literal["Email Operation Status Changed", "Email Operation Stats Changed"] = Field(
        alias="detail-type"
    )
    detail: TriggerDetail


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "<event>"
        if item["type"] == "missing":
            parts.append(f"{location}: field required")
        else:
            parts.append(f"{location}: {item['msg']}")
    return "; ".join(parts)


def parse_trigger(event: object, *, expected_source: str) -> TriggerEvent:
    """Parse the invocation event; raise :class:`InvalidTriggerEvent` naming every bad field."""
    if not isinstance(event, dict):
        raise InvalidTriggerEvent(
            f"trigger event rejected: expected a JSON object, got {type(event).__name__}"
        )
    source = event.get("source")
    if source != expected_source:
        shown = repr(source)[:_SHOWN_VALUE_CHARS]
        raise InvalidTriggerEvent(
            f"trigger event rejected: source: expected {expected_source!r} (EVENT_SOURCE), got {shown}"
        )
    try:
        return parse(event=_as_dict(event), model=TriggerEvent)
    except ValidationError as exc:
        raise InvalidTriggerEvent(f"trigger event rejected: {_describe(exc)}") from None


def _as_dict(event: dict[Any, Any]) -> dict[str, Any]:
    return {str(key): value for key, value in event.items()}
