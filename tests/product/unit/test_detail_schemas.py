"""The JSON Schemas of the poller detail-types: strict enough to catch a wrong shape, and the sample events
in ``events/`` match them."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from comms_bridge.comms.models import EmailOperation, EmailOperationStats, OperationStatus, parse_timestamp
from comms_bridge.events.detail_types import POLLER_DETAIL_TYPES, DetailType
from comms_bridge.events.keys import stalled_key, stats_changed_key, status_changed_key
from comms_bridge.events.schemas import load_schema
from comms_bridge.poller.change_detection import TrackedOperation, decide
from tests.support.operation_factory import ACCOUNT_SID, at, operation
from tests.support.schemas import detail_errors, validate_detail, validate_event

EVENTS = Path(__file__).resolve().parents[3] / "events"
SAMPLES = {
    "status-changed.json": DetailType.STATUS_CHANGED,
    "stats-changed.json": DetailType.STATS_CHANGED,
    "stalled.json": DetailType.STALLED,
}
S = OperationStatus


@pytest.mark.parametrize("detail_type", POLLER_DETAIL_TYPES)
def test_schemas_are_valid_draft_04(detail_type: DetailType) -> None:
    jsonschema.Draft4Validator.check_schema(load_schema(detail_type))


def _sample(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text(encoding="utf-8"))
    return event


@pytest.mark.parametrize(("name", "detail_type"), SAMPLES.items())
def test_sample_event_is_a_valid_envelope_of_its_detail_type(name: str, detail_type: DetailType) -> None:
    event = _sample(name)
    assert event["detail-type"] == detail_type.value
    assert event["source"] == "twilio.comms"
    validate_event(event)


def _expected_key(detail_type: str, detail: dict[str, Any]) -> str:
    account, operation_id = detail["accountSid"], detail["operationId"]
    if detail_type == DetailType.STATUS_CHANGED:
        return status_changed_key(account, operation_id, S(detail["status"]))
    if detail_type == DetailType.STATS_CHANGED:
        return stats_changed_key(
            account,
            operation_id,
            S(detail["status"]),
            detail["updatedAt"],
            EmailOperationStats.model_validate(detail["stats"]),
        )
    return stalled_key(account, operation_id, detail["updatedAt"])


@pytest.mark.parametrize(("name", "detail_type"), SAMPLES.items())
def test_sample_event_is_what_the_poller_would_publish(name: str, detail_type: DetailType) -> None:
    detail = _sample(name)["detail"]
    assert detail["eventKey"] == _expected_key(detail_type, detail)
    previous = detail["previousStats"]
    if previous is None:
        assert detail["delta"] == detail["stats"]
    else:
        assert detail["delta"] == {k: detail["stats"][k] - previous[k] for k in detail["stats"]}
    if detail_type is DetailType.STALLED:
        stalled_for = parse_timestamp(detail["observedAt"]) - parse_timestamp(detail["updatedAt"])
        assert abs(stalled_for.total_seconds() - detail["stalledForSeconds"]) < 60


def _first_change(before: EmailOperation, after: EmailOperation, seconds: int) -> dict[str, Any]:
    """The detail of the first change the poller decides for ``before`` -> ``after``, ``seconds`` in."""
    decision = decide(
        TrackedOperation.from_operation(before),
        after,
        account_sid=ACCOUNT_SID,
        observed_at=at(seconds),
        now=at(seconds),
        stall_after_seconds=1800,
        emit_first_sighting=True,
    )
    return decision.changes[0].detail


def _status_changed() -> dict[str, Any]:
    before = operation(S.PROCESSING, updated=60, total=4, queued=4)
    after = operation(S.COMPLETED, updated=120, total=4, sent=4, delivered=3, failed=1)
    return _first_change(before, after, 121)


def _stalled() -> dict[str, Any]:
    op = operation(S.PROCESSING, updated=0, total=4, queued=4)
    return _first_change(op, op, 4000)


def test_produced_details_validate() -> None:
    validate_detail(DetailType.STATUS_CHANGED, _status_changed())
    validate_detail(DetailType.STALLED, _stalled())


def _broken(detail: dict[str, Any], path: tuple[str, ...], value: object) -> dict[str, Any]:
    broken = copy.deepcopy(detail)
    target = broken
    for part in path[:-1]:
        target = target[part]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return broken


_DELETE = object()

STATUS_CHANGED_BREAKAGES: list[tuple[tuple[str, ...], object]] = [
    (("eventKey",), _DELETE),
    (("eventKey",), "not-a-key"),
    (("schemaVersion",), "2.0"),
    (("accountSid",), "AC123"),
    (("operationId",), "op_1"),
    (("status",), "DONE"),
    (("previousStatus",), "queued"),
    (("stats", "total"), "4"),
    (("stats", "failed"), -1),
    (("stats", "sent"), 1.5),
    (("stats", "opened"), _DELETE),
    (("stats", "bounced"), 1),
    (("delta", "queued"), "x"),
    (("rates", "failed"), "0.25"),
    (("rates", "failed"), -0.1),
    (("rates", "sent"), 0.1),
    (("terminal",), "true"),
    (("terminal",), False),  # COMPLETED is terminal
    (("createdAt",), "2024-06-20 10:00:00"),
    (("updatedAt",), "2024-06-20T10:00:00+02:00"),
    (("observedAt",), None),
    (("stalledForSeconds",), 5),
    (("extra",), 1),
]


@pytest.mark.parametrize(("path", "value"), STATUS_CHANGED_BREAKAGES, ids=lambda v: repr(v)[:30])
def test_status_changed_schema_rejects(path: tuple[str, ...], value: object) -> None:
    assert detail_errors(DetailType.STATUS_CHANGED, _broken(_status_changed(), path, value))


def test_status_changed_accepts_first_sighting_nulls_and_fractional_seconds() -> None:
    detail = _status_changed()
    detail.update(previousStatus=None, previousStats=None, delta=detail["stats"])
    detail["updatedAt"] = "2024-06-20T10:02:00.123Z"
    validate_detail(DetailType.STATUS_CHANGED, detail)


def test_stats_changed_requires_previous_status_equal_to_status() -> None:
    detail = _status_changed()
    detail["eventKey"] = "0" * 32
    assert detail_errors(DetailType.STATS_CHANGED, detail)  # COMPLETED vs PROCESSING
    detail["previousStatus"] = "COMPLETED"
    validate_detail(DetailType.STATS_CHANGED, detail)
    detail["previousStats"] = None
    assert detail_errors(DetailType.STATS_CHANGED, detail)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("stalledForSeconds",), _DELETE),
        (("stalledForSeconds",), -1),
        (("stalledForSeconds",), 1.5),
        (("status",), "COMPLETED"),
        (("previousStats",), None),
        (("terminal",), True),
    ],
    ids=lambda v: repr(v)[:30],
)
def test_stalled_schema_rejects(path: tuple[str, ...], value: object) -> None:
    assert detail_errors(DetailType.STALLED, _broken(_stalled(), path, value))


def test_validate_event_rejects_a_bare_detail() -> None:
    with pytest.raises(jsonschema.ValidationError, match="envelope"):
        validate_event(_stalled())
