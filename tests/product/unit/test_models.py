"""Comms API models: valid operations round-trip; invalid items are skipped with a reason, never crash."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comms_bridge.comms.models import (
    OPERATION_ID_PATTERN,
    STAT_FIELDS,
    ApiErrorEnvelope,
    EmailOperation,
    MalformedResponseError,
    OperationStatus,
    format_timestamp,
    is_operation_id,
    parse_operation_errors_page,
    parse_operations_page,
    parse_timestamp,
)

HYPOTHESIS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# The doc fixture of "Fetch an Email Operation" (reference/comms-api.md §1).
FETCH_EXAMPLE: dict[str, Any] = {
    "id": "comms_operation_01h9krwprkeee8fzqspvwy6nq8",
    "status": "COMPLETED",
    "stats": {
        "total": 3,
        "recipients": 3,
        "attempts": 3,
        "queued": 0,
        "sent": 3,
        "scheduled": 0,
        "delivered": 3,
        "opened": 2,
        "undelivered": 0,
        "failed": 0,
        "canceled": 0,
    },
    "createdAt": "2024-04-10T09:15:00Z",
    "updatedAt": "2024-04-10T09:45:00Z",
}

operation_ids = st.from_regex(OPERATION_ID_PATTERN, fullmatch=True)
timestamps = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(format_timestamp)
counters = st.integers(min_value=0, max_value=10**12)


@st.composite
def valid_operations(draw: st.DrawFn) -> dict[str, Any]:
    stats = {name: draw(counters) for name in STAT_FIELDS}
    operation: dict[str, Any] = {
        "id": draw(operation_ids),
        "status": draw(st.sampled_from([s.value for s in OperationStatus])),
        "stats": stats,
        "createdAt": draw(timestamps),
        "updatedAt": draw(timestamps),
    }
    # Unknown fields are ignored, at the top and inside stats.
    if draw(st.booleans()):
        operation["newField"] = draw(st.one_of(st.none(), st.integers(), st.text(max_size=5)))
        stats["read"] = 1
    return operation


def _set_stat(op: dict[str, Any], value: Any) -> None:
    op["stats"]["failed"] = value


BREAKERS: dict[str, Any] = {
    "missing stats": lambda op: op.pop("stats"),
    "missing id": lambda op: op.pop("id"),
    "missing status": lambda op: op.pop("status"),
    "missing createdAt": lambda op: op.pop("createdAt"),
    "missing counter": lambda op: op["stats"].pop("delivered"),
    "string counter": lambda op: _set_stat(op, "5"),
    "float counter": lambda op: _set_stat(op, 5.5),
    "bool counter": lambda op: _set_stat(op, True),
    "null counter": lambda op: _set_stat(op, None),
    "negative counter": lambda op: _set_stat(op, -1),
    "stats not an object": lambda op: op.__setitem__("stats", [1, 2, 3]),
    "bad id prefix": lambda op: op.__setitem__("id", op["id"].replace("comms_operation_", "comms_email_")),
    "upper-case id": lambda op: op.__setitem__("id", op["id"].upper()),
    "id with newline": lambda op: op.__setitem__("id", op["id"] + "\n"),
    "short id": lambda op: op.__setitem__("id", "comms_operation_0abc"),
    "id not a string": lambda op: op.__setitem__("id", 12345),
    "unknown status": lambda op: op.__setitem__("status", "RUNNING"),
    "lower-case status": lambda op: op.__setitem__("status", op["status"].lower()),
    "timestamp without offset": lambda op: op.__setitem__("createdAt", "2024-06-20T10:15:30"),
    "timestamp garbage": lambda op: op.__setitem__("updatedAt", "yesterday"),
    "impossible date": lambda op: op.__setitem__("updatedAt", "2024-13-40T10:15:30Z"),
    "timestamp number": lambda op: op.__setitem__("createdAt", 1718878530),
}
NOT_OBJECTS = [None, 5, "comms_operation_01h9krwprkeee8fzqspvwy6nq8", [], True]


@st.composite
def invalid_operations(draw: st.DrawFn) -> tuple[str, Any]:
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        return "not an object", draw(st.sampled_from(NOT_OBJECTS))
    operation = draw(valid_operations())
    name = draw(st.sampled_from(sorted(BREAKERS)))
    BREAKERS[name](operation)
    return name, operation


def page(
    items: list[Any], next_token: str | None = "tok-next", self_token: str | None = "tok-self"
) -> dict[str, Any]:
    return {"operations": items, "pagination": {"next": next_token, "self": self_token}}


def test_doc_fetch_example_parses():
    operation = EmailOperation.model_validate(FETCH_EXAMPLE)
    assert operation.status is OperationStatus.COMPLETED
    assert operation.stats.opened == 2
    assert operation.created == datetime(2024, 4, 10, 9, 15, tzinfo=UTC)
    assert operation.to_api_dict() == FETCH_EXAMPLE


def test_stats_without_recipients_and_attempts_default_to_zero():
    # The "operations and email tracking" doc example has neither counter.
    raw = copy.deepcopy(FETCH_EXAMPLE)
    del raw["stats"]["recipients"], raw["stats"]["attempts"]
    operation = EmailOperation.model_validate(raw)
    assert (operation.stats.recipients, operation.stats.attempts) == (0, 0)


@HYPOTHESIS
@given(st.lists(valid_operations(), max_size=5), st.one_of(st.none(), st.text(min_size=1, max_size=20)))
def test_valid_operations_round_trip_through_a_page(operations, next_token):
    parsed = parse_operations_page(page(operations, next_token=next_token))
    assert parsed.skipped == []
    assert parsed.next_token == next_token
    assert parsed.self_token == "tok-self"
    assert len(parsed.operations) == len(operations)
    for raw, operation in zip(operations, parsed.operations, strict=True):
        expected = {key: raw[key] for key in ("id", "status", "createdAt", "updatedAt")}
        expected["stats"] = {name: raw["stats"][name] for name in STAT_FIELDS}
        assert operation.to_api_dict() == expected
        # Parsing the model's own output gives the same model.
        assert EmailOperation.model_validate(operation.to_api_dict()) == operation
        assert is_operation_id(operation.id)
        assert format_timestamp(operation.created) == raw["createdAt"]


@HYPOTHESIS
@given(st.lists(st.one_of(valid_operations().map(lambda op: (None, op)), invalid_operations()), max_size=8))
def test_invalid_items_are_skipped_with_a_reason_and_the_rest_survives(items):
    parsed = parse_operations_page(page([item for _, item in items]))
    valid = [(i, item) for i, (broken, item) in enumerate(items) if broken is None]
    invalid = [(i, broken, item) for i, (broken, item) in enumerate(items) if broken is not None]
    assert [op.id for op in parsed.operations] == [item["id"] for _, item in valid]
    assert [s.index for s in parsed.skipped] == [i for i, _, _ in invalid]
    for skipped, (_, broken, item) in zip(parsed.skipped, invalid, strict=True):
        assert skipped.reason, broken
        raw_id = item.get("id") if isinstance(item, dict) else None
        assert skipped.item_id == (raw_id if isinstance(raw_id, str) else None)


@pytest.mark.parametrize("breaker", sorted(BREAKERS))
def test_each_kind_of_breakage_is_skipped(breaker):
    broken = copy.deepcopy(FETCH_EXAMPLE)
    BREAKERS[breaker](broken)
    parsed = parse_operations_page(page([FETCH_EXAMPLE, broken, FETCH_EXAMPLE]))
    assert len(parsed.operations) == 2
    assert len(parsed.skipped) == 1
    assert parsed.skipped[0].index == 1
    assert parsed.skipped[0].reason


def test_skip_reason_names_the_field_but_not_the_value():
    broken = copy.deepcopy(FETCH_EXAMPLE)
    broken["stats"]["failed"] = "5"
    (skipped,) = parse_operations_page(page([broken])).skipped
    assert "stats.failed" in skipped.reason
    assert skipped.item_id == FETCH_EXAMPLE["id"]


@pytest.mark.parametrize(
    "payload",
    [
        None,
        [],
        "operations",
        {"operations": []},
        {"pagination": {"next": None}},
        {"operations": {"a": 1}, "pagination": {"next": None}},
        {"operations": [], "pagination": None},
        {"operations": [], "pagination": {"next": 5}},
    ],
)
def test_broken_envelope_is_malformed_response(payload):
    with pytest.raises(MalformedResponseError):
        parse_operations_page(payload)


def test_operation_errors_page_is_tolerant():
    payload = {
        "errors": [
            {
                "code": 30001,
                "message": "Queue overflow",
                "emailId": "comms_email_x",
                "recipient": "a@example.com",
            },
            {"code": 30002},
            {"code": "30003"},
            {"message": "m", "unknown": 1},
            "nope",
        ],
        "pagination": {"next": None, "self": "s"},
    }
    parsed = parse_operation_errors_page(payload)
    assert [e.code for e in parsed.errors] == [30001, 30002, None]
    assert parsed.errors[0].email_id == "comms_email_x"
    assert [s.index for s in parsed.skipped] == [2, 4]


def test_error_envelope():
    envelope = ApiErrorEnvelope.model_validate(
        {
            "errors": [
                {
                    "code": 20404,
                    "message": "The resource was not found.",
                    "infoUrl": "https://www.twilio.com/docs/api/errors/20404",
                    "context": "null",
                }
            ]
        }
    )
    assert envelope.errors[0].code == 20404
    assert envelope.errors[0].info_url == "https://www.twilio.com/docs/api/errors/20404"


@HYPOTHESIS
@given(st.datetimes(timezones=st.just(UTC), min_value=datetime(1971, 1, 1), max_value=datetime(9000, 1, 1)))
def test_timestamps_round_trip_at_second_precision(value):
    assert parse_timestamp(format_timestamp(value)) == value.replace(microsecond=0)


def test_timestamp_with_offset_is_converted_to_utc():
    assert parse_timestamp("2024-06-20T12:15:30+02:00") == datetime(2024, 6, 20, 10, 15, 30, tzinfo=UTC)
    assert format_timestamp(datetime(2024, 6, 20, 12, 15, 30, tzinfo=UTC) + timedelta(hours=0)) == (
        "2024-06-20T12:15:30Z"
    )


def test_status_rank_moves_forward_and_both_final_statuses_rank_alike() -> None:
    order = [OperationStatus.SCHEDULED, OperationStatus.PROCESSING, OperationStatus.COMPLETED]
    assert [s.rank for s in order] == sorted({s.rank for s in order})
    assert OperationStatus.CANCELED.rank == OperationStatus.COMPLETED.rank
