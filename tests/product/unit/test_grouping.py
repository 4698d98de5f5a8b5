"""Grouping errors by (code, message) and the Errors Summarized detail built from the groups."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
from hypothesis import given, settings
from hypothesis import strategies as st

from comms_bridge.comms.models import STAT_FIELDS, OperationError
from comms_bridge.enricher.grouping import (
    MAX_GROUPS,
    MAX_MESSAGE_CHARS,
    MAX_SAMPLES,
    ErrorGroup,
    ErrorTally,
    clip,
    group_errors,
)
from comms_bridge.enricher.summary import ErrorsSummary
from comms_bridge.events.detail_types import DetailType
from comms_bridge.events.keys import EVENT_KEY_PATTERN, summary_event_key
from tests.support.error_summaries import TRIGGER_KEY
from tests.support.error_summaries import make_summary as build_summary
from tests.support.schemas import detail_errors, validator

SCHEMA_PATH = (
    Path(__file__).resolve().parents[3]
    / "layers/shared/python/comms_bridge/events/schemas/email-operation-errors-summarized.json"
)
STATS = dict.fromkeys(STAT_FIELDS, 0) | {"total": 1000, "sent": 1000, "delivered": 850, "failed": 120}


def err(code: int | None, message: str | None, email: str | None = None) -> OperationError:
    return OperationError(code=code, message=message, email_id=email)


def summary(groups: list[ErrorGroup], **overrides: object) -> ErrorsSummary:
    return build_summary(groups, **{"stats": STATS, **overrides})


def test_groups_by_code_and_message_most_frequent_first() -> None:
    errors = [
        err(62001, "invalid", "comms_email_1"),
        err(62004, "suppressed", "comms_email_2"),
        err(62004, "suppressed", "comms_email_3"),
        err(62001, "other text", "comms_email_4"),
        err(62004, "suppressed", "comms_email_5"),
        err(62001, "invalid", "comms_email_6"),
    ]
    groups = group_errors(errors)
    assert [(g.code, g.message, g.count) for g in groups] == [
        (62004, "suppressed", 3),
        (62001, "invalid", 2),
        (62001, "other text", 1),
    ]
    assert groups[0].sample_email_ids == ("comms_email_2", "comms_email_3", "comms_email_5")


def test_ties_keep_the_order_the_api_listed_them_in() -> None:
    errors = [err(3, "c"), err(1, "a"), err(2, "b"), err(1, "a"), err(3, "c"), err(2, "b")]
    assert [g.code for g in group_errors(errors)] == [3, 1, 2]


def test_samples_are_capped_unique_and_skip_missing_ids() -> None:
    tally = ErrorTally()
    for index in range(20):
        tally.add(err(1, "m", f"comms_email_{index % 7}"))
    tally.add(err(1, "m", None))
    (group,) = tally.groups()
    assert group.count == 21
    assert group.sample_email_ids == tuple(f"comms_email_{i}" for i in range(MAX_SAMPLES))


def test_missing_code_or_message_is_a_group_of_its_own() -> None:
    groups = group_errors([err(None, None), err(None, None), err(7, None), err(None, "text")])
    assert [(g.code, g.message, g.count) for g in groups] == [
        (None, None, 2),
        (7, None, 1),
        (None, "text", 1),
    ]


def test_at_most_twenty_groups_but_every_error_counted() -> None:
    tally = ErrorTally()
    for code in range(50):
        for _ in range(code + 1):
            tally.add(err(code, f"message {code}"))
    groups = tally.groups()
    assert len(groups) == MAX_GROUPS
    assert tally.distinct == 50
    assert tally.total == sum(range(1, 51))
    assert groups[0].code == 49
    assert groups[-1].code == 30


def test_huge_messages_are_cut_and_group_together() -> None:
    long_a = "x" * 5000 + "A"
    long_b = "x" * 5000 + "B"
    (group,) = group_errors([err(1, long_a), err(1, long_b)])
    assert group.count == 2
    assert group.message is not None
    assert len(group.message) == MAX_MESSAGE_CHARS
    assert group.message.endswith("…")


def test_clip() -> None:
    assert clip("abc", 3) == "abc"
    assert clip("abcd", 3) == "ab…"
    assert clip("abcdef", 5, ellipsis="...") == "ab..."


def test_summary_event_key_is_deterministic_and_distinct_from_the_trigger() -> None:
    key = summary_event_key("k1")
    assert key == summary_event_key("k1")
    assert key != summary_event_key("k2")
    assert len(key) == 32
    assert int(key, 16) >= 0
    assert re.fullmatch(EVENT_KEY_PATTERN, key)
    assert summary_event_key(TRIGGER_KEY) != TRIGGER_KEY  # a trigger key has the same shape


def test_detail_has_exactly_the_contract_fields_and_matches_the_schema() -> None:
    groups = group_errors([err(62001, "invalid", "comms_email_1"), err(None, None)])
    detail = summary(groups, note="not in the event", truncated=True).detail()
    assert list(detail) == [
        "schemaVersion",
        "eventKey",
        "accountSid",
        "operationId",
        "status",
        "stats",
        "errorCount",
        "truncated",
        "errorGroups",
        "trigger",
    ]
    assert detail["errorGroups"][0] == {
        "code": 62001,
        "message": "invalid",
        "count": 1,
        "sampleEmailIds": ["comms_email_1"],
    }
    assert detail["trigger"] == {"detailType": "Email Operation Status Changed", "eventKey": TRIGGER_KEY}
    assert detail_errors(DetailType.ERRORS_SUMMARIZED, detail) == []


def test_schema_file_is_draft_04_and_rejects_extras() -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert schema["$schema"] == "http://json-schema.org/draft-04/schema#"
    jsonschema.Draft4Validator.check_schema(schema)
    detail = summary([]).detail()
    for broken in (
        detail | {"note": "x"},
        detail | {"errorCount": "3"},
        detail | {"errorGroups": [{"code": 1, "message": "m", "count": 1}]},
        {key: value for key, value in detail.items() if key != "trigger"},
        detail | {"stats": {**detail["stats"], "failed": 1.5}},
    ):
        assert not validator(DetailType.ERRORS_SUMMARIZED).is_valid(broken)


def test_record_round_trip() -> None:
    original = summary(group_errors([err(1, "a", "comms_email_1")]), note="why", truncated=True)
    restored = ErrorsSummary.from_record(json.loads(json.dumps(original.to_record())))
    assert restored == original


def test_rates_follow_the_contract_formula() -> None:
    rates = summary([]).rates
    assert rates["failed"] == 0.12
    assert rates["delivered"] == 0.85
    assert summary([], stats=dict.fromkeys(STAT_FIELDS, 0)).rates["failed"] == 0


error_items = st.builds(
    OperationError,
    code=st.one_of(st.none(), st.integers(0, 5)),
    message=st.one_of(st.none(), st.sampled_from(["a", "b", "c", "d" * 1200])),
    email_id=st.one_of(st.none(), st.text(min_size=1, max_size=8)),
)


@settings(max_examples=80, deadline=None)
@given(st.lists(error_items, max_size=200), st.integers(1, 25))
def test_grouping_properties(errors: list[OperationError], limit: int) -> None:
    tally = ErrorTally()
    tally.extend(errors)
    groups = tally.groups(limit)
    assert tally.total == len(errors)
    assert len(groups) == min(limit, tally.distinct)
    counts = [group.count for group in groups]
    assert counts == sorted(counts, reverse=True)
    if tally.distinct <= limit:
        assert sum(counts) == len(errors)
    for group in groups:
        assert len(group.sample_email_ids) <= MAX_SAMPLES
        assert len(set(group.sample_email_ids)) == len(group.sample_email_ids)
    detail = summary(groups[:MAX_GROUPS], error_count=len(errors), distinct_groups=tally.distinct).detail()
    assert detail_errors(DetailType.ERRORS_SUMMARIZED, detail) == []
