"""Detail building of the poller events: fields, numbers, rates, keys, sizes."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from comms_bridge.comms.models import STAT_FIELDS, OperationStatus
from comms_bridge.events.detail_types import POLLER_DETAIL_TYPES, SCHEMA_VERSION, DetailType
from comms_bridge.events.details import build_detail, detail_json, entry_size_bytes, stats_delta, stats_rates
from comms_bridge.events.keys import EVENT_KEY_PATTERN, stalled_key, stats_changed_key, status_changed_key
from comms_bridge.events.schemas import load_schema, schema_text
from tests.support.operation_factory import ACCOUNT_SID, OPERATION_ID, at, stats, ts

S = OperationStatus
CONTRACT_FIELDS = {
    "schemaVersion", "eventKey", "accountSid", "operationId", "status", "previousStatus", "stats",
    "previousStats", "delta", "rates", "terminal", "createdAt", "updatedAt", "observedAt",
}  # fmt: skip


def test_detail_types_are_the_four_of_the_contract() -> None:
    assert {d.value for d in DetailType} == {
        "Email Operation Status Changed",
        "Email Operation Stats Changed",
        "Email Operation Stalled",
        "Email Operation Errors Summarized",
    }
    assert DetailType.ERRORS_SUMMARIZED not in POLLER_DETAIL_TYPES
    assert SCHEMA_VERSION == "1.0"


@pytest.mark.parametrize("detail_type", POLLER_DETAIL_TYPES)
def test_each_poller_detail_type_has_its_schema_in_the_package(detail_type: DetailType) -> None:
    schema = load_schema(detail_type)
    assert schema["$schema"] == "http://json-schema.org/draft-04/schema#"
    assert schema["x-detail-type"] == detail_type.value
    assert schema["additionalProperties"] is False
    assert json.loads(schema_text(detail_type.value)) == schema
    load_schema(detail_type)["title"] = "mutated"
    assert load_schema(detail_type)["title"] != "mutated"


def test_unknown_detail_type_has_no_schema() -> None:
    with pytest.raises(ValueError, match="not a valid DetailType"):
        load_schema("Email Operation Exploded")


def _detail(**overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "event_key": "0" * 32,
        "account_sid": ACCOUNT_SID,
        "operation_id": OPERATION_ID,
        "status": S.COMPLETED,
        "previous_status": S.PROCESSING,
        "stats": stats(total=3, sent=3, delivered=2, failed=1),
        "previous_stats": stats(total=3, queued=3),
        "created_at": ts(0),
        "updated_at": ts(60),
        "observed_at": at(61),
    }
    values.update(overrides)
    return build_detail(**values)  # type: ignore[arg-type]


def test_detail_has_exactly_the_contract_fields() -> None:
    assert set(_detail()) == CONTRACT_FIELDS
    assert set(_detail(stalled_for_seconds=5)) == CONTRACT_FIELDS | {"stalledForSeconds"}


def test_detail_numbers_are_json_numbers_with_ints_kept_as_ints() -> None:
    detail = _detail()
    for group in ("stats", "previousStats", "delta"):
        assert all(type(value) is int for value in detail[group].values())  # type: ignore[attr-defined]
    assert all(type(value) is float for value in detail["rates"].values())  # type: ignore[attr-defined]
    text = detail_json(detail)
    assert '"total":3' in text
    assert '"failed":0.3333' in text
    assert json.loads(text) == detail


def test_first_sighting_detail_has_null_previous_and_delta_equal_to_stats() -> None:
    detail = _detail(previous_status=None, previous_stats=None)
    assert detail["previousStatus"] is None
    assert detail["previousStats"] is None
    assert detail["delta"] == detail["stats"]


@pytest.mark.parametrize(
    ("status", "terminal"),
    [(S.SCHEDULED, False), (S.PROCESSING, False), (S.COMPLETED, True), (S.CANCELED, True)],
)
def test_terminal_follows_status(status: OperationStatus, terminal: bool) -> None:
    assert _detail(status=status)["terminal"] is terminal


def test_observed_at_is_formatted_like_twilio() -> None:
    assert _detail()["observedAt"] == "2024-06-20T10:01:01Z"


def test_rates_are_rounded_to_four_decimals() -> None:
    rates = stats_rates(stats(total=3, delivered=1, opened=2, undelivered=0, failed=3, canceled=0))
    assert rates == {
        "delivered": 0.3333,
        "opened": 0.6667,
        "undelivered": 0.0,
        "failed": 1.0,
        "canceled": 0.0,
    }


def test_rates_are_zero_when_total_is_zero() -> None:
    assert stats_rates(stats(total=0, opened=4)) == dict.fromkeys(
        ("delivered", "opened", "undelivered", "failed", "canceled"), 0.0
    )


def test_delta_is_per_counter_and_may_be_negative() -> None:
    delta = stats_delta(stats(total=5, queued=0, sent=5), stats(total=5, queued=5))
    assert delta["queued"] == -5
    assert delta["sent"] == 5
    assert list(delta) == list(STAT_FIELDS)


def test_keys_are_32_hex_chars_and_separate_the_kinds() -> None:
    status_key = status_changed_key(ACCOUNT_SID, OPERATION_ID, S.COMPLETED)
    processing_key = status_changed_key(ACCOUNT_SID, OPERATION_ID, S.PROCESSING)
    stats_key = stats_changed_key(ACCOUNT_SID, OPERATION_ID, S.COMPLETED, ts(60), stats(total=1))
    stall_key = stalled_key(ACCOUNT_SID, OPERATION_ID, ts(60))
    keys = [status_key, processing_key, stats_key, stall_key]
    assert all(re.fullmatch(EVENT_KEY_PATTERN, key) for key in keys)
    assert len(set(keys)) == 4


def _documented_key(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]


def test_keys_follow_the_documented_rule() -> None:
    # Consumers dedupe on these keys: changing the derivation is a contract change.
    assert status_changed_key(ACCOUNT_SID, OPERATION_ID, S.COMPLETED) == _documented_key(
        "status", ACCOUNT_SID, OPERATION_ID, "COMPLETED"
    )
    counters = stats(total=3, sent=2, delivered=1)
    assert stats_changed_key(ACCOUNT_SID, OPERATION_ID, S.PROCESSING, ts(60), counters) == _documented_key(
        "stats",
        ACCOUNT_SID,
        OPERATION_ID,
        "PROCESSING",
        ts(60),
        ",".join(f"{name}={value}" for name, value in counters.as_dict().items()),
    )
    assert stalled_key(ACCOUNT_SID, OPERATION_ID, ts(60)) == _documented_key(
        "stalled", ACCOUNT_SID, OPERATION_ID, ts(60)
    )
    assert (
        stalled_key("AC" + "0" * 32, "comms_operation_0aaaaaaaaaaaaaaaaaaaaaaaaa", "2024-06-20T10:00:00Z")
        == "d4fd49b4bb775a993e6324102a5e87bd"
    )


def test_stats_key_depends_on_every_counter() -> None:
    base = stats_changed_key(ACCOUNT_SID, OPERATION_ID, S.PROCESSING, ts(60), stats())
    for name in STAT_FIELDS:
        assert stats_changed_key(ACCOUNT_SID, OPERATION_ID, S.PROCESSING, ts(60), stats(**{name: 1})) != base


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.sampled_from(["a", "b", "c", "ab", "bc", ""]), min_size=3, max_size=3),
    st.lists(st.sampled_from(["a", "b", "c", "ab", "bc", ""]), min_size=3, max_size=3),
)
def test_key_parts_do_not_run_into_each_other(left: list[str], right: list[str]) -> None:
    if left != right:
        assert stalled_key(*left) != stalled_key(*right)


def test_entry_size_counts_source_detail_type_detail_and_resources() -> None:
    detail = _detail()
    size = entry_size_bytes(DetailType.STATUS_CHANGED, detail, source="twilio.comms", resources=("arn:x",))
    expected = 14 + len("twilio.comms") + len(DetailType.STATUS_CHANGED.value) + len(detail_json(detail)) + 5
    assert size == expected
    assert size < 2048  # a poller event is far below the 256 KB PutEvents limit
