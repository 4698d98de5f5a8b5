"""Parsing the trigger event with Powertools Parser: ours is accepted, anything else is named and refused."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from comms_bridge.comms.models import OperationStatus
from comms_bridge.enricher.trigger import InvalidTriggerEvent, TriggerEvent, parse_trigger
from comms_bridge.events.detail_types import DetailType
from tests.support.schemas import detail_errors

SAMPLE = Path(__file__).resolve().parents[3] / "events" / "errors-trigger.json"


def sample() -> dict[str, Any]:
    event: dict[str, Any] = json.loads(SAMPLE.read_text(encoding="utf-8"))
    return event


def rejected(event: object, source: str = "twilio.comms") -> str:
    with pytest.raises(InvalidTriggerEvent) as caught:
        parse_trigger(event, expected_source=source)
    return str(caught.value)


def test_sample_event_parses_and_is_a_valid_poller_event() -> None:
    event = sample()
    trigger = parse_trigger(event, expected_source="twilio.comms")
    assert isinstance(trigger, TriggerEvent)
    assert trigger.detail_type == DetailType.STATUS_CHANGED
    assert trigger.detail.status is OperationStatus.COMPLETED
    assert trigger.detail.stats.failed == 120
    assert trigger.detail.event_key == event["detail"]["eventKey"]
    assert detail_errors(DetailType.STATUS_CHANGED, event["detail"]) == []


def test_sample_event_is_above_the_default_thresholds() -> None:
    detail = sample()["detail"]
    assert detail["status"] == "COMPLETED"
    assert detail["stats"]["failed"] >= 10
    assert detail["rates"]["failed"] >= 0.05


def test_stats_changed_is_accepted_and_unknown_detail_fields_ignored() -> None:
    event = sample()
    event["detail-type"] = DetailType.STATS_CHANGED.value
    event["detail"]["somethingNew"] = {"x": 1}
    assert parse_trigger(event, expected_source="twilio.comms").detail_type == DetailType.STATS_CHANGED


def test_stalled_is_a_trigger_too() -> None:
    event = json.loads((SAMPLE.parent / "stalled.json").read_text(encoding="utf-8"))
    trigger = parse_trigger(event, expected_source="twilio.comms")
    assert trigger.is_stall
    assert trigger.detail.updated_at == event["detail"]["updatedAt"]
    assert trigger.detail.stalled_for_seconds == event["detail"]["stalledForSeconds"]
    assert not parse_trigger(sample(), expected_source="twilio.comms").is_stall


@pytest.mark.parametrize("detail_type", ["Email Operation Errors Summarized", "EC2"])
def test_other_detail_types_are_not_ours(detail_type: str) -> None:
    event = sample()
    event["detail-type"] = detail_type
    assert "detail-type" in rejected(event)


def test_another_source_is_not_ours_and_is_named() -> None:
    event = sample()
    event["source"] = "aws.ec2"
    message = rejected(event)
    assert "source" in message
    assert "aws.ec2" in message
    assert "twilio.comms" in message


def test_source_follows_event_source_setting() -> None:
    event = sample()
    event["source"] = "acme.comms"
    assert parse_trigger(event, expected_source="acme.comms").detail.operation_id


@pytest.mark.parametrize(
    ("path", "named"),
    [
        (("detail", "eventKey"), "detail.eventKey: field required"),
        (("detail", "operationId"), "detail.operationId: field required"),
        (("detail", "stats", "failed"), "detail.stats.failed: field required"),
        (("detail", "status"), "detail.status: field required"),
        (("detail", "accountSid"), "detail.accountSid: field required"),
        (("detail",), "detail: field required"),
        (("id",), "id: field required"),
    ],
)
def test_missing_field_is_named(path: tuple[str, ...], named: str) -> None:
    event = sample()
    target = event
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    assert named in rejected(event)


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (("detail", "stats", "failed"), "120", "detail.stats.failed"),
        (("detail", "stats", "failed"), -1, "detail.stats.failed"),
        (("detail", "status"), "EXPLODED", "detail.status"),
        (("detail", "operationId"), "op-1", "detail.operationId"),
        (("detail", "schemaVersion"), "2.0", "detail.schemaVersion"),
        (("detail", "eventKey"), "", "detail.eventKey"),
    ],
)
def test_bad_value_is_named(path: tuple[str, ...], value: object, named: str) -> None:
    event = sample()
    target = event
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert named in rejected(event)


def test_not_an_object_at_all() -> None:
    assert "JSON object" in rejected(["not", "an", "event"])
    assert "source" in rejected({})


def test_a_scheduler_event_is_not_ours() -> None:
    event = {
        "version": "0",
        "id": "x",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-01-05T09:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {},
    }
    assert "source" in rejected(event)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["eventKey", "accountSid", "operationId", "status", "stats", "schemaVersion"]))
def test_every_required_detail_field_is_required(field: str) -> None:
    event = copy.deepcopy(sample())
    del event["detail"][field]
    assert f"detail.{field}: field required" in rejected(event)
