"""The events that trigger the alerter, as Powertools Parser models (contract §1, §3).

ErrorsTriggerRule routes *Status Changed* and *Stats Changed* events, StalledAlertRule *Stalled* events,
both through the errors queue. Anything else that reaches the function (a mis-wired rule, a hand-made
test event) is rejected with an error naming the field, before any alert is sent. Only the fields the
alerter uses are required; the rest of the detail is ignored, so a poller that adds fields does not break
it. A trigger that parses is still only a claim: the alerter confirms it against the Comms API
(``enricher.confirmation``) before it alerts anyone.
"""

from __future__ import annotations

import json
from typing import Any, Final, Literal

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from comms_bridge.comms.models import OPERATION_ID_PATTERN, EmailOperationStats, OperationStatus
from comms_bridge.events.detail_types import DetailType

ACCOUNT_SID_PATTERN: Final = r"^AC[0-9a-fA-F]{32}$"
_SHOWN_VALUE_CHARS: Final = 80

FAILURE_DETAIL_TYPES: Final = (DetailType.STATUS_CHANGED.value, DetailType.STATS_CHANGED.value)
STALLED: Final = DetailType.STALLED.value


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
    updated_at: str | None = Field(default=None, alias="updatedAt", max_length=64)
    stalled_for_seconds: int | None = Field(default=None, alias="stalledForSeconds", ge=0)


class TriggerEvent(EventBridgeModel):
    """An EventBridge event whose ``detail`` is one of the poller's three trigger detail-types."""

    detail_type: Literal[
        "Email Operation Status Changed", "Email Operation Stats Changed", "Email Operation Stalled"
    ] = Field(alias="detail-type")
    detail: TriggerDetail

    @property
    def is_stall(self) -> bool:
        return self.detail_type == STALLED


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


def trigger_from_queue_body(body: str) -> object:
    """The EventBridge event an SQS message carries (the rule's SQS target sends the event as the body)."""
    try:
        return json.loads(body)
    except ValueError:
        raise InvalidTriggerEvent("trigger event rejected: the queue message body is not JSON") from None


def _as_dict(event: dict[Any, Any]) -> dict[str, Any]:
    return {str(key): value for key, value in event.items()}
