"""Contract §6 with fake I/O: a trigger is a claim the Comms API must confirm, a flood is capped per
operation and hour, and a stall is confirmed and alerted like a failure (contract §4).

Before issue 13 the alerter believed the event: a forged trigger alerted with the forged numbers, a
foreign accountSid was alerted, 30 forged keys gave 30 alerts, and a stall never went through it."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from comms_bridge.comms.exceptions import CommsServerError
from comms_bridge.enricher.alerts.slack import render_slack_message
from comms_bridge.enricher.alerts.sns import render_sns
from comms_bridge.enricher.confirmation import (
    Thresholds,
    TriggerNotConfirmed,
    Unconfirmed,
    confirm,
)
from comms_bridge.enricher.enricher import AlertPolicy, Enricher
from comms_bridge.enricher.stall import StallAlert
from comms_bridge.enricher.summary import ErrorsSummary
from comms_bridge.enricher.trigger import TriggerEvent, parse_trigger
from tests.support.enricher_fakes import (
    ACCOUNT_SID,
    Counter,
    FakeComms,
    FakeSink,
    FakeSource,
    FakeTarget,
    MemoryBudget,
    MemoryLedger,
    errors,
    operation,
    page,
)

SAMPLES = Path(__file__).resolve().parents[3] / "events"
OPERATION_ID = "comms_operation_52yfjxxdab954gq5z2zza5sv9a"
API_NOW = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
FORGED_STATS = {
    "total": 1_000_000,
    "recipients": 1_000_000,
    "attempts": 1_000_000,
    "scheduled": 0,
    "queued": 0,
    "sent": 1_000_000,
    "delivered": 0,
    "opened": 0,
    "undelivered": 0,
    "failed": 1_000_000,
    "canceled": 0,
}


def failure_trigger(**detail: Any) -> TriggerEvent:
    event = json.loads((SAMPLES / "errors-trigger.json").read_text(encoding="utf-8"))
    event["detail"].update(detail)
    return parse_trigger(event, expected_source="twilio.comms")


def stall_trigger(updated_at: str = "2026-01-05T09:22:00Z", **detail: Any) -> TriggerEvent:
    event = json.loads((SAMPLES / "errors-trigger.json").read_text(encoding="utf-8"))
    event["detail-type"] = "Email Operation Stalled"
    event["detail"].update(
        status="PROCESSING", previousStatus="PROCESSING", updatedAt=updated_at, stalledForSeconds=1800
    )
    event["detail"].update(detail)
    return parse_trigger(event, expected_source="twilio.comms")


class Rig:
    def __init__(self, comms: FakeComms, *, per_hour: int = 3) -> None:
        self.comms = comms
        self.source = FakeSource([page(errors(3, 62001))])
        self.sink = FakeSink()
        self.targets = [FakeTarget("sns"), FakeTarget("slack")]
        self.budget = MemoryBudget(per_hour)
        self.ledger = MemoryLedger()
        self.telemetry = Counter()

    def run(self, trigger: TriggerEvent) -> dict[str, Any]:
        return Enricher(
            comms=self.comms,
            errors=self.source,
            sink=self.sink,
            targets=list(self.targets),
            budget=self.budget,
            ledger=self.ledger,
            telemetry=self.telemetry,
            policy=AlertPolicy(Thresholds(failed_count=10, failed_rate=0.05), stall_after_seconds=1800),
        ).run(trigger)

    def rejected(self, trigger: TriggerEvent) -> Unconfirmed:
        with pytest.raises(TriggerNotConfirmed) as caught:
            self.run(trigger)
        assert self.nothing_sent()
        assert self.ledger.records == {}, "a rejected trigger leaves no record behind"
        return caught.value.reason

    def nothing_sent(self) -> bool:
        return not self.sink.published and all(not t.attempts for t in self.targets)

    @property
    def posts(self) -> int:
        return len(self.targets[1].delivered)


def known(**kwargs: Any) -> FakeComms:
    return FakeComms({OPERATION_ID: operation(OPERATION_ID, **kwargs)}, now=API_NOW)


# -- failure triggers ----------------------------------------------------------------------------------


def test_forged_counters_alert_with_the_apis_numbers_not_the_events() -> None:
    """Before: a forged 1,000,000 of 1,000,000 reached Slack. After: the API's 120 of 1,000 does."""
    rig = Rig(known())
    result = rig.run(failure_trigger(stats=FORGED_STATS))
    assert result["alerts"] == {"sns": "sent", "slack": "sent"}
    (detail,) = rig.sink.published
    assert detail["stats"]["failed"] == 120
    assert detail["stats"]["total"] == 1000
    slack = json.dumps(render_slack_message(rig.targets[1].delivered[0]))
    subject, body = render_sns(rig.targets[0].delivered[0])
    assert "120 of 1,000 emails failed" in slack
    assert "1,000,000" not in slack + subject + body


@pytest.mark.parametrize(
    ("api", "reason"),
    [
        ({"failed": 9, "delivered": 976}, Unconfirmed.BELOW_THRESHOLDS),  # below the count
        ({"failed": 40, "delivered": 945}, Unconfirmed.BELOW_THRESHOLDS),  # 4.0% < 5%
        ({"status": "PROCESSING"}, Unconfirmed.NOT_COMPLETED),
        ({"status": "CANCELED"}, Unconfirmed.NOT_COMPLETED),
    ],
)
def test_thresholds_not_met_by_the_apis_numbers_alert_nobody(
    api: dict[str, Any], reason: Unconfirmed
) -> None:
    rig = Rig(known(**api))
    assert rig.rejected(failure_trigger(stats=FORGED_STATS)) is reason
    assert rig.telemetry.counts[("UnconfirmedTriggers", None)] == 1


def test_another_account_is_refused_without_a_request() -> None:
    """Before: a trigger naming a foreign accountSid was alerted. After: nobody, and no API call."""
    rig = Rig(known())
    assert rig.rejected(failure_trigger(accountSid="AC" + "ab" * 16)) is Unconfirmed.FOREIGN_ACCOUNT
    assert rig.comms.fetches == 0


def test_an_operation_the_api_does_not_know_alerts_nobody() -> None:
    rig = Rig(FakeComms({}, now=API_NOW))
    assert rig.rejected(failure_trigger()) is Unconfirmed.UNKNOWN_OPERATION
    assert rig.comms.fetches == 1


def test_the_api_failing_during_confirmation_is_retried_not_rejected() -> None:
    rig = Rig(FakeComms({}, now=API_NOW, fail_with=CommsServerError("HTTP 500", status=500)))
    with pytest.raises(CommsServerError):
        rig.run(failure_trigger())
    assert rig.nothing_sent()
    assert ("UnconfirmedTriggers", None) not in rig.telemetry.counts
    rig.comms.fail_with = None
    rig.comms.operations[OPERATION_ID] = operation(OPERATION_ID)
    assert rig.run(failure_trigger())["alerts"] == {"sns": "sent", "slack": "sent"}


def test_the_alert_names_the_credentials_account() -> None:
    rig = Rig(known())
    rig.run(failure_trigger())
    assert all(t.delivered[0].account_sid == ACCOUNT_SID for t in rig.targets)


# -- the hourly cap ------------------------------------------------------------------------------------


def test_thirty_forged_keys_for_one_operation_page_at_most_the_cap() -> None:
    """Before: 30 forged eventKeys gave 30 alerts. After: the cap (3), then AlertsCapped."""
    rig = Rig(known(), per_hour=3)
    results = [rig.run(failure_trigger(eventKey=uuid.uuid4().hex)) for _ in range(30)]
    assert rig.posts == 3
    assert len(rig.targets[0].delivered) == 3
    assert len(rig.sink.published) == 3
    assert sum(bool(r.get("capped")) for r in results) == 27
    assert rig.telemetry.counts[("AlertsCapped", None)] == 27


def test_a_replayed_trigger_does_not_take_from_the_cap_again() -> None:
    rig = Rig(known(), per_hour=1)
    first = rig.run(failure_trigger())
    assert rig.run(failure_trigger()) == first
    assert rig.budget.taken == {OPERATION_ID: 1}


# -- stalls --------------------------------------------------------------------------------------------


def test_a_confirmed_stall_is_alerted_formatted_once_and_publishes_nothing() -> None:
    """Before: a stall reached e-mail as raw event JSON and never reached Slack. After: both, formatted."""
    rig = Rig(known(status="PROCESSING", sent=320, total=500, delivered=300, failed=0))
    trigger = stall_trigger()
    result = rig.run(trigger)
    assert result["kind"] == "stall"
    assert result["alerts"] == {"sns": "sent", "slack": "sent"}
    assert result["stalledForSeconds"] == 38 * 60  # 09:22 to the API's 10:00
    assert rig.sink.published == [], "a stall publishes no Errors Summarized event"
    assert rig.source.calls == 0, "a stall reads no errors"
    (alert,) = rig.targets[1].delivered
    assert isinstance(alert, StallAlert)
    assert rig.run(trigger) == result
    assert [t.attempts for t in rig.targets] == [1, 1]
    subject, body = render_sns(alert)
    assert subject.startswith("[comms-bridge] Stalled, no progress for 38 minutes (320 of 500 emails sent)")
    assert "{" not in body, "the mail is a formatted message, not the event's JSON"
    slack = render_slack_message(alert)
    assert slack["blocks"][0]["text"]["text"].startswith(
        "Email operation stalled: no progress for 38 minutes"
    )


@pytest.mark.parametrize(
    ("api", "trigger_updated", "reason"),
    [
        ({"status": "COMPLETED"}, "2026-01-05T09:22:00Z", Unconfirmed.NOT_PROCESSING),
        (
            {"status": "PROCESSING", "updated_at": "2026-01-05T09:50:00Z"},
            "2026-01-05T09:22:00Z",
            Unconfirmed.MOVED_SINCE,
        ),
        (
            {"status": "PROCESSING", "updated_at": "2026-01-05T09:40:00Z"},
            "2026-01-05T09:40:00Z",
            Unconfirmed.NOT_STALLED_YET,
        ),
    ],
)
def test_a_stall_the_api_does_not_confirm_alerts_nobody(
    api: dict[str, Any], trigger_updated: str, reason: Unconfirmed
) -> None:
    rig = Rig(known(**api))
    assert rig.rejected(stall_trigger(updated_at=trigger_updated)) is reason


def test_stall_confirmation_uses_the_apis_clock() -> None:
    trigger = stall_trigger()
    api = operation(OPERATION_ID, status="PROCESSING")
    thresholds = Thresholds(10, 0.05)
    updated = datetime(2026, 1, 5, 9, 22, tzinfo=UTC)
    confirmed = confirm(
        trigger,
        api,
        account_sid=ACCOUNT_SID,
        thresholds=thresholds,
        stall_after_seconds=1800,
        api_now=updated + timedelta(seconds=1800),
    )
    assert confirmed.stalled_for_seconds == 1800
    with pytest.raises(TriggerNotConfirmed):
        confirm(
            trigger,
            api,
            account_sid=ACCOUNT_SID,
            thresholds=thresholds,
            stall_after_seconds=1800,
            api_now=updated + timedelta(seconds=1799),
        )


def test_failure_thresholds_are_inclusive_like_the_rule() -> None:
    exactly = operation(OPERATION_ID, failed=10, total=200, delivered=175)  # 10 and 0.05
    assert Thresholds(10, 0.05).met_by(exactly)
    assert not Thresholds(11, 0.05).met_by(exactly)
    assert not Thresholds(10, 0.0501).met_by(exactly)


def test_summary_and_stall_alert_types_are_what_targets_receive() -> None:
    rig = Rig(known())
    rig.run(failure_trigger())
    assert isinstance(rig.targets[0].delivered[0], ErrorsSummary)
