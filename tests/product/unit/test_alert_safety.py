"""Contract §4 and §6 for what the alerter sends and stores: API text is safe in Slack and e-mail, the
Errors Summarized event always fits EventBridge's 256 KB and no idempotency record DynamoDB's 400 KB.

Before issue 13: 100 sample ids of 3,000 characters made a 302 KB event (PutEvents failed three times
while the alerts went out); an error message could start a line of its own in the mail, carried
direction overrides into both, and Slack auto-linked URLs in it."""

from __future__ import annotations

import json
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from comms_bridge.comms.models import STAT_FIELDS, OperationError
from comms_bridge.enricher.alerts.slack import render_slack_message
from comms_bridge.enricher.alerts.sns import API_TEXT_PREFIX, render_body
from comms_bridge.enricher.alerts.wording import api_text, shown_id
from comms_bridge.enricher.grouping import MAX_GROUPS, ErrorGroup, ErrorTally
from comms_bridge.enricher.summary import ERRORS_SUMMARIZED, MAX_ENTRY_BYTES, ErrorsSummary, fit_summary
from comms_bridge.events.details import entry_size_bytes
from tests.support.error_summaries import make_summary

STATS = dict.fromkeys(STAT_FIELDS, 0) | {"total": 1000, "sent": 1000, "delivered": 880, "failed": 120}
DYNAMODB_ITEM_BYTES = 400 * 1024
BIDI_AND_CONTROL = "\u202e\u202a\u2066\u2069\u200e\u200f\u200b\x00\x1b\x7f\u2028\u2029"
HOSTILE = (
    "Mailbox full.\n\n  2. 1,000,000 x code 1: forged line\r\nFrom: ceo@example.com\t"
    f"{BIDI_AND_CONTROL}https://evil.example/login <!channel> @here <https://x|click>"
)


def summary_of(errors: list[OperationError], **overrides: object) -> ErrorsSummary:
    tally = ErrorTally()
    tally.extend(errors)
    return make_summary(
        tally.groups(MAX_GROUPS),
        stats=STATS,
        error_count=tally.total,
        distinct_groups=tally.distinct,
        **overrides,
    )


def size(summary: ErrorsSummary, source: str = "twilio.comms") -> int:
    return entry_size_bytes(ERRORS_SUMMARIZED, summary.detail(), source=source)


# -- sizes ---------------------------------------------------------------------------------------------


def test_a_hundred_sample_ids_of_3000_characters_fit_in_one_event() -> None:
    """Before: 302 KB, refused by EventBridge. After: the ids are no ids and are not kept."""
    errors = [
        OperationError(code=code, message=f"error {code}", email_id=f"{code:02d}-{index}-" + "x" * 2995)
        for code in range(20)
        for index in range(5)
    ]
    summary = fit_summary(summary_of(errors), source="twilio.comms")
    assert size(summary) <= MAX_ENTRY_BYTES
    assert len(summary.groups) == 20
    assert all(group.sample_email_ids == () for group in summary.groups)


def test_the_summary_shrinks_until_it_fits_whatever_it_holds() -> None:
    """Samples go first, then message length, then the least frequent groups; the counts stay."""
    groups = [
        ErrorGroup(code, "\u0000" * 5000, 100 - code, tuple(f"id{code}-{i}" + "y" * 120 for i in range(5)))
        for code in range(20)
    ]
    huge = make_summary(groups, stats=STATS, error_count=2000, distinct_groups=25)
    assert size(huge) > MAX_ENTRY_BYTES  # 6 bytes of JSON per NUL character: about 600 KB
    fitted = fit_summary(huge, source="twilio.comms")
    assert size(fitted) <= MAX_ENTRY_BYTES
    assert (fitted.error_count, fitted.distinct_groups) == (2000, 25)
    assert fitted.groups[0].count == 100, "the most frequent groups are kept"
    small = fit_summary(huge, source="twilio.comms", limit=4000)
    assert size(small) <= 4000
    assert [group.sample_email_ids for group in small.groups] == [()] * len(small.groups)


def test_a_long_event_source_is_counted_too() -> None:
    summary = summary_of([OperationError(code=c, message="m" * 1000, email_id="e") for c in range(20)])
    source = "s" * 256
    assert size(fit_summary(summary, source=source, limit=20_000), source) <= 20_000


@settings(max_examples=25, deadline=None)
@given(
    messages=st.lists(st.text(min_size=0, max_size=3000), min_size=1, max_size=40),
    ids=st.lists(st.text(min_size=1, max_size=200), min_size=1, max_size=10),
)
def test_any_api_answer_gives_an_event_and_records_within_the_limits(
    messages: list[str], ids: list[str]
) -> None:
    errors = [
        OperationError(code=i, message=message, email_id=ids[i % len(ids)])
        for i, message in enumerate(messages)
    ]
    summary = fit_summary(summary_of(errors, note="n" * 500), source="twilio.comms")
    assert size(summary) <= MAX_ENTRY_BYTES
    # The step record Powertools stores (JSON in one attribute) and the trigger's result are far below 400 KB.
    record = json.dumps(summary.to_record(), ensure_ascii=False).encode()
    assert len(record) < DYNAMODB_ITEM_BYTES - 10_000


# -- text from the API ---------------------------------------------------------------------------------


def test_api_text_is_one_line_without_control_or_direction_characters() -> None:
    cleaned = api_text(HOSTILE)
    assert "\n" not in cleaned
    assert "\r" not in cleaned
    assert not any(char in cleaned for char in BIDI_AND_CONTROL)
    assert cleaned.startswith("Mailbox full. 2. 1,000,000 x code 1: forged line From: ceo@example.com")


def test_slack_text_objects_are_verbatim_and_api_text_cannot_mention_link_or_forge_lines() -> None:
    summary = summary_of([OperationError(code=62001, message=HOSTILE, email_id="comms_email_01a")])
    message = render_slack_message(summary)
    objects = [
        obj
        for block in message["blocks"]
        for obj in [block.get("text"), *block.get("fields", []), *block.get("elements", [])]
        if isinstance(obj, dict)
    ]
    mrkdwn = [obj for obj in objects if obj["type"] == "mrkdwn"]
    assert mrkdwn
    assert all(obj["verbatim"] is True for obj in mrkdwn)
    text = json.dumps(message, ensure_ascii=False)
    assert "<!channel>" not in text
    assert "<https://x|click>" not in text
    assert not any(char in text for char in BIDI_AND_CONTROL)
    group = next(obj["text"] for obj in mrkdwn if "Mailbox full" in obj["text"])
    assert "forged line" in group
    assert "\n*" not in group.split("\ne.g.")[0], "the message cannot open a line of its own"


def test_in_the_mail_every_line_of_api_text_is_quoted() -> None:
    summary = summary_of(
        [OperationError(code=62001, message=HOSTILE + " word" * 60, email_id="comms_email_01a")]
    )
    body = render_body(summary)
    assert not any(char in body for char in BIDI_AND_CONTROL)
    quoted = [line for line in body.splitlines() if line.startswith(API_TEXT_PREFIX)]
    assert len(quoted) >= 3, "a long message wraps, every line quoted"
    for line in body.splitlines():
        if line.startswith(API_TEXT_PREFIX):
            continue
        assert "forged line" not in line
        assert "From: ceo" not in line
        assert not re.match(r"^\s*From:", line)
    # No line of ours starts with the quote bar, so a quoted line is always the API's.
    plain = render_body(summary_of([OperationError(code=1, message=None, email_id=None)]))
    assert not any(line.lstrip().startswith("|") for line in plain.splitlines() if "(no message)" not in line)


def test_sample_ids_that_are_not_ids_are_not_shown() -> None:
    assert shown_id("comms_email_568ce4xaa7zphpfnfhsdtda5ed") == "comms_email_568ce4xaa7zphpfnfhsdtda5ed"
    assert shown_id("x\nFrom: ceo@example.com") == "(malformed id)"
    assert shown_id("<!here>") == "(malformed id)"
    summary = summary_of([OperationError(code=1, message="m", email_id="id with spaces <!here>")])
    assert "<!here>" not in json.dumps(render_slack_message(summary))
    assert "(malformed id)" in render_body(summary)


def test_slack_retry_after_as_an_http_date_is_waited_for() -> None:
    """Slack's Retry-After is read by the Comms client's parser: delta-seconds or an HTTP date measured
    against the response's Date (the local copy it replaced took only seconds and waited 1 s instead)."""
    import requests  # noqa: PLC0415

    from comms_bridge.enricher.alerts.webhook import SlackWebhook  # noqa: PLC0415

    answers = [
        (429, {"Date": "Thu, 03 Dec 2026 16:00:00 GMT", "Retry-After": "Thu, 03 Dec 2026 16:00:07 GMT"}),
        (200, {}),
    ]

    class Session(requests.Session):
        def post(self, *args: object, **kwargs: object) -> requests.Response:  # type: ignore[override]
            status, headers = answers.pop(0)
            response = requests.Response()
            response.status_code = status
            response.headers.update(headers)
            response._content = b"ok"
            return response

    waits: list[float] = []
    webhook = SlackWebhook(
        lambda: "https://hooks.slack.com/services/T/B/x", session=Session(), sleep=waits.append
    )
    assert webhook.post({"text": "hi"}).attempts == 2
    assert waits == [7.0]
