"""The Slack (Block Kit) and SNS (subject + body) renderings: content, and Slack's and SNS's limits."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from comms_bridge.comms.models import STAT_FIELDS, OperationError
from comms_bridge.enricher.alerts.slack import (
    MAX_BLOCKS,
    MAX_FIELD_CHARS,
    MAX_FIELDS,
    MAX_HEADER_CHARS,
    MAX_SECTION_CHARS,
    escape,
    plain_rendering,
    render_slack_message,
)
from comms_bridge.enricher.alerts.sns import (
    MAX_SUBJECT_CHARS,
    render_body,
    render_sns,
    render_subject,
    safe_subject,
)
from comms_bridge.enricher.grouping import MAX_GROUPS, ErrorGroup, ErrorTally
from comms_bridge.enricher.summary import ErrorsSummary
from tests.support.error_summaries import ACCOUNT, OPERATION
from tests.support.error_summaries import make_summary as build_summary

STATS = dict.fromkeys(STAT_FIELDS, 0) | {
    "total": 1000,
    "recipients": 1000,
    "attempts": 1000,
    "sent": 1000,
    "delivered": 865,
    "opened": 300,
    "undelivered": 15,
    "failed": 120,
}


def make_summary(groups: list[ErrorGroup], **overrides: object) -> ErrorsSummary:
    return build_summary(groups, **{"stats": STATS, **overrides})


TYPICAL = [
    ErrorGroup(62001, "The recipient address is invalid.", 60, ("comms_email_01a", "comms_email_01b")),
    ErrorGroup(62004, "The recipient is on the suppression list.", 30, ("comms_email_02a",)),
    ErrorGroup(None, None, 2, ()),
]


def huge_summary(message_chars: int = 20_000) -> ErrorsSummary:
    tally = ErrorTally(max_message_chars=message_chars)
    for code in range(300):
        for index in range(3):
            tally.add(
                OperationError(
                    code=code, message=f"{code} " + "<!channel> & `x` " * 2000, email_id=f"e{index}" * 60
                )
            )
    return make_summary(
        tally.groups(MAX_GROUPS), error_count=tally.total, distinct_groups=tally.distinct, truncated=True
    )


def texts_of(block: dict[str, object]) -> list[str]:
    found: list[str] = []
    text = block.get("text")
    if isinstance(text, dict):
        found.append(text["text"])
    for item in block.get("fields", []) or []:  # type: ignore[union-attr]
        found.append(item["text"])
    for item in block.get("elements", []) or []:  # type: ignore[union-attr]
        found.append(item["text"])
    return found


def assert_within_slack_limits(message: dict[str, object]) -> None:
    blocks = message["blocks"]
    assert isinstance(blocks, list)
    assert 0 < len(blocks) <= MAX_BLOCKS
    for block in blocks:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= MAX_HEADER_CHARS
            assert block["text"]["type"] == "plain_text"
        if block["type"] == "section":
            assert "text" in block or "fields" in block
            if "text" in block:
                assert 0 < len(block["text"]["text"]) <= MAX_SECTION_CHARS
            fields = block.get("fields", [])
            assert len(fields) <= MAX_FIELDS
            assert all(len(field["text"]) <= MAX_FIELD_CHARS for field in fields)
        if block["type"] == "context":
            assert 0 < len(block["elements"]) <= 10
            assert all(len(element["text"]) <= MAX_SECTION_CHARS for element in block["elements"])
    assert isinstance(message["text"], str)
    assert message["text"]
    json.dumps(message)


# -- Slack --------------------------------------------------------------------------------------------


def test_slack_message_names_operation_counters_rates_and_top_groups() -> None:
    message = render_slack_message(make_summary(TYPICAL))
    assert_within_slack_limits(message)
    everything = "\n".join(text for block in message["blocks"] for text in texts_of(block))
    assert message["blocks"][0]["type"] == "header"
    assert "120 of 1,000 emails failed (12.0%)" in message["blocks"][0]["text"]["text"]
    assert OPERATION in everything
    assert ACCOUNT in everything
    assert "*Delivered*\n865 (86.5%)" in everything
    assert "*Failed*\n120 (12.0%)" in everything
    assert "*Total*\n1,000" in everything
    assert "The recipient address is invalid." in everything
    assert "`comms_email_01a`" in everything
    assert "(no message)" in everything
    assert everything.index("62001") < everything.index("62004")
    assert OPERATION in message["text"]
    assert "all of them" in everything


def test_slack_escapes_api_text_so_it_cannot_mention_or_link() -> None:
    group = ErrorGroup(1, "<!channel> <https://evil.example|click> & `code`", 1, ("id`x",))
    everything = json.dumps(render_slack_message(make_summary([group])))
    assert "<!channel>" not in everything
    assert "&lt;!channel&gt;" in everything
    assert "&lt;https://evil.example|click&gt; &amp;" in everything
    assert escape("a<b>&c") == "a&lt;b&gt;&amp;c"


def test_slack_limits_hold_for_many_groups_and_huge_messages() -> None:
    summary = huge_summary()
    message = render_slack_message(summary)
    assert_within_slack_limits(message)
    group_sections = [
        b
        for b in message["blocks"]
        if b["type"] == "section" and "\u00d7" in b.get("text", {}).get("text", "")
    ]
    assert len(group_sections) == MAX_GROUPS
    assert any("280 more distinct errors" in t for b in message["blocks"] for t in texts_of(b))
    assert any("not read to the end" in t for b in message["blocks"] for t in texts_of(b))


def test_slack_message_says_when_details_are_unavailable() -> None:
    note = "The error details are no longer available: the Comms API answered 404."
    message = render_slack_message(make_summary([], note=note, truncated=True))
    assert_within_slack_limits(message)
    everything = "\n".join(t for b in message["blocks"] for t in texts_of(b))
    assert note in everything
    assert not any(b["type"] == "divider" for b in message["blocks"])


def test_plain_rendering_is_readable_text() -> None:
    text = plain_rendering(render_slack_message(make_summary(TYPICAL)))
    assert text.splitlines()[0].startswith("Email operation completed: 120 of 1,000 emails failed")
    assert "*Failed*: 120 (12.0%)" in text


group_strategy = st.builds(
    ErrorGroup,
    code=st.one_of(st.none(), st.integers(-(2**40), 2**40)),
    message=st.one_of(st.none(), st.text(max_size=4000)),
    count=st.integers(1, 10**9),
    sample_email_ids=st.lists(st.text(min_size=1, max_size=300), max_size=5, unique=True).map(tuple),
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(group_strategy, max_size=MAX_GROUPS),
    st.integers(0, 10_000),
    st.one_of(st.none(), st.text(max_size=5000)),
    st.text(min_size=1, max_size=300),
)
def test_rendering_limits_hold_for_any_content(
    groups: list[ErrorGroup], hidden: int, note: str | None, operation_id: str
) -> None:
    summary = make_summary(
        groups,
        distinct_groups=len(groups) + hidden,
        note=note,
        operation_id=operation_id,
        truncated=bool(hidden),
    )
    assert_within_slack_limits(render_slack_message(summary))
    subject, body = render_sns(summary)
    assert len(subject) <= MAX_SUBJECT_CHARS
    assert subject.isascii()
    assert subject.isprintable()
    assert "\n" not in subject
    assert subject.strip() == subject
    assert subject
    assert body.endswith("\n")


# -- SNS ----------------------------------------------------------------------------------------------


def test_sns_subject_leads_with_the_numbers_and_fits() -> None:
    subject = render_subject(make_summary(TYPICAL))
    assert subject == f"[comms-bridge] 120 of 1,000 emails failed (12.0%) - {OPERATION}"
    assert len(subject) <= MAX_SUBJECT_CHARS


def test_sns_subject_is_cut_with_an_ascii_ellipsis() -> None:
    long_id = "comms_operation_0" + "z" * 200
    subject = render_subject(make_summary(TYPICAL, operation_id=long_id))
    assert len(subject) == MAX_SUBJECT_CHARS
    assert subject.endswith("...")
    assert subject.startswith("[comms-bridge] 120 of 1,000 emails failed (12.0%)")


def test_safe_subject_removes_line_breaks_and_non_ascii() -> None:
    assert safe_subject("a\nb\r\nc\tdé…") == "a b c d ..."
    assert safe_subject("\n\n") == "comms-bridge alert"


def test_sns_body_is_a_readable_plain_text_mail() -> None:
    body = render_body(make_summary(TYPICAL))
    lines = body.splitlines()
    assert (
        " ".join(lines[:2])
        == f"Email operation {OPERATION} is COMPLETED: 120 of 1,000 emails failed (12.0%)."
    )
    assert f"  Account    {ACCOUNT}" in lines
    assert any(line.split() == ["failed", "120", "12.0%"] for line in lines)
    assert any(line.split() == ["total", "1,000"] for line in lines)
    assert lines[lines.index("  1. 60 x code 62001") + 1] == "     | The recipient address is invalid."
    assert "     e.g. comms_email_01a, comms_email_01b" in lines
    assert lines[lines.index("  3. 2 x no code") + 1] == "     | (no message)"
    assert "Errors read: 92, all of them (3 distinct errors)." in lines
    assert max(len(line) for line in lines) <= 78
    assert "<" not in body


def test_sns_body_with_huge_input_stays_bounded_and_wrapped() -> None:
    summary = huge_summary(message_chars=1000)
    body = render_body(summary)
    assert len(body.encode()) < 256 * 1024
    assert max(len(line) for line in body.splitlines()) <= 78
    assert "... and 280 more distinct errors" in body
    assert "not read to the end" in body


def test_sns_body_carries_the_note() -> None:
    body = render_body(make_summary([], note="The error details are no longer available.", truncated=True))
    assert "NOTE: The error details are no longer available." in body
    assert "Top errors" not in body
