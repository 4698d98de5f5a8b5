"""The enricher's orchestration with fake I/O: confirmation against the API, the hourly cap, reading policy,
step ledger replay, alert failure policy."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from comms_bridge.comms.exceptions import CommsNotFound, CommsServerError, CommsThrottled
from comms_bridge.enricher.alerts.webhook import webhook_url_from_secret
from comms_bridge.enricher.enricher import Enricher, EnrichmentIncomplete, read_errors
from comms_bridge.enricher.ports import AlertFailed
from comms_bridge.enricher.settings import EnricherSettings
from comms_bridge.enricher.trigger import parse_trigger
from comms_bridge.settings import SettingsError
from tests.support.enricher_fakes import (
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

SAMPLE = Path(__file__).resolve().parents[3] / "events" / "errors-trigger.json"
OPERATION_ID = "comms_operation_52yfjxxdab954gq5z2zza5sv9a"  # the sample's operation


def trigger(**detail: Any) -> Any:
    event = json.loads(SAMPLE.read_text(encoding="utf-8"))
    event["detail"].update(detail)
    return parse_trigger(event, expected_source="twilio.comms")


class Rig:
    def __init__(
        self,
        source: FakeSource,
        *,
        sink: FakeSink | None = None,
        targets: list[FakeTarget] | None = None,
        comms: FakeComms | None = None,
        budget: MemoryBudget | None = None,
    ):
        self.source = source
        self.sink = sink or FakeSink()
        self.targets = targets if targets is not None else [FakeTarget("sns"), FakeTarget("slack")]
        self.comms = comms or FakeComms({OPERATION_ID: operation(OPERATION_ID)})
        self.budget = budget or MemoryBudget()
        self.ledger = MemoryLedger()
        self.telemetry = Counter()

    def run(
        self, max_errors: int = 1000, time_left: Callable[[], float] = lambda: 60.0, **detail: Any
    ) -> dict[str, Any]:
        enricher = Enricher(
            comms=self.comms,
            errors=self.source,
            sink=self.sink,
            targets=list(self.targets),
            budget=self.budget,
            ledger=self.ledger,
            telemetry=self.telemetry,
            max_errors=max_errors,
            time_left=time_left,
        )
        return enricher.run(trigger(**detail))


def test_happy_path_reads_groups_publishes_and_alerts_each_target_once() -> None:
    source = FakeSource([page(errors(3, 1) + errors(5, 2), "t1"), page(errors(1, 3))])
    rig = Rig(source)
    result = rig.run()
    assert result["errorCount"] == 9
    assert result["alerts"] == {"sns": "sent", "slack": "sent"}
    (detail,) = rig.sink.published
    assert [(g["code"], g["count"]) for g in detail["errorGroups"]] == [(2, 5), (1, 3), (3, 1)]
    assert detail["truncated"] is False
    assert detail["trigger"]["eventKey"] == trigger().detail.event_key
    assert all(len(t.delivered) == 1 for t in rig.targets)
    assert rig.telemetry.counts == {
        ("ErrorsRead", None): 9,
        ("ErrorGroups", None): 3,
        ("SummariesPublished", None): 1,
        ("AlertsSent", "sns"): 1,
        ("AlertsSent", "slack"): 1,
    }


def test_a_second_run_for_the_same_event_key_replays_and_sends_nothing() -> None:
    rig = Rig(FakeSource([page(errors(2))]))
    first = rig.run()
    second = rig.run()
    assert first == second
    assert rig.source.calls == 1
    assert len(rig.sink.published) == 1
    assert [t.attempts for t in rig.targets] == [1, 1]


def test_retryable_alert_failure_fails_the_run_and_the_retry_sends_only_that_target() -> None:
    sns = FakeTarget("sns", [AlertFailed("SNS Publish failed: NotFound", retryable=True, kind="NotFound")])
    slack = FakeTarget("slack")
    rig = Rig(FakeSource([page(errors(2))]), targets=[sns, slack])
    with pytest.raises(EnrichmentIncomplete, match="sns alert: SNS Publish failed: NotFound"):
        rig.run()
    assert len(rig.sink.published) == 1
    assert len(slack.delivered) == 1
    result = rig.run()
    assert result["alerts"] == {"sns": "sent", "slack": "sent"}
    assert len(sns.delivered) == 1
    assert slack.attempts == 1
    assert rig.source.calls == 1
    assert len(rig.sink.published) == 1
    assert rig.telemetry.counts[("AlertFailures", "sns")] == 1


def test_permanent_alert_failure_is_recorded_counted_for_the_alarm_and_never_retried() -> None:
    slack = FakeTarget("slack", [AlertFailed("HTTP 404 no_service", retryable=False, kind="rejected")])
    rig = Rig(FakeSource([page(errors(2))]), targets=[FakeTarget("sns"), slack])
    assert rig.run()["alerts"] == {"sns": "sent", "slack": "failed"}
    assert rig.run()["alerts"] == {"sns": "sent", "slack": "failed"}
    assert slack.attempts == 1
    assert rig.telemetry.counts[("AlertFailures", "slack")] == 1
    assert rig.telemetry.counts[("PermanentAlertFailures", None)] == 1
    assert ("AlertsSent", "slack") not in rig.telemetry.counts


def test_transient_alert_failures_are_retried_until_the_target_has_the_alert_once() -> None:
    transient = [AlertFailed(f"HTTP {s}", retryable=True, kind="server_error") for s in (500, 502, 503)]
    slack = FakeTarget("slack", transient)
    rig = Rig(FakeSource([page(errors(2))]), targets=[FakeTarget("sns"), slack])
    for _ in range(3):
        with pytest.raises(EnrichmentIncomplete, match="slack alert"):
            rig.run()
    assert rig.run()["alerts"] == {"sns": "sent", "slack": "sent"}
    assert len(slack.delivered) == 1
    assert rig.targets[0].attempts == 1
    assert ("PermanentAlertFailures", None) not in rig.telemetry.counts


def test_publish_failure_still_alerts_then_fails_and_the_retry_publishes_once() -> None:
    rig = Rig(FakeSource([page(errors(2))]), sink=FakeSink(failures=1))
    with pytest.raises(EnrichmentIncomplete, match="summary event"):
        rig.run()
    assert rig.sink.published == []
    assert all(len(t.delivered) == 1 for t in rig.targets)
    assert rig.telemetry.counts[("PublishFailures", None)] == 1
    result = rig.run()
    assert result["published"] is True
    assert len(rig.sink.published) == 1
    assert all(t.attempts == 1 for t in rig.targets)


def test_no_targets_configured_publishes_the_summary_only() -> None:
    rig = Rig(FakeSource([page(errors(2))]), targets=[])
    assert rig.run()["alerts"] == {}
    assert len(rig.sink.published) == 1


# -- reading policy ------------------------------------------------------------------------------------


def read(source: FakeSource, **kwargs: Any) -> Any:
    options: dict[str, Any] = {"failed_count": 120, "max_errors": 1000, "time_left": lambda: 60.0}
    options.update(kwargs)
    return read_errors(source, "comms_operation_01h9krwprkeee8fzqspvwy6nq8", **options)


def test_stops_at_max_errors_and_says_truncated() -> None:
    result = read(FakeSource([page(errors(4), "t1"), page(errors(4), "t2"), page(errors(4))]), max_errors=6)
    assert result.tally.total == 6
    assert result.truncated is True
    assert result.note is None


def test_reading_everything_is_not_truncated() -> None:
    result = read(FakeSource([page(errors(4), "t1"), page(errors(4))]))
    assert (result.tally.total, result.truncated, result.pages) == (8, False, 2)


def test_stops_when_the_time_left_runs_out() -> None:
    budget = iter([5.0, 0.0])
    result = read(
        FakeSource([page(errors(4), "t1"), page(errors(4), "t2"), page(errors(4))]),
        time_left=lambda: next(budget),
    )
    assert result.tally.total == 8
    assert result.truncated is True
    assert result.note is not None
    assert "time limit" in result.note


def test_404_gives_no_errors_a_note_and_truncated_when_failures_were_counted() -> None:
    missing = CommsNotFound("Comms API list_errors: not found", status=404)
    result = read(FakeSource([], fail_with=missing))
    assert (result.tally.total, result.truncated, result.failure) == (0, True, "not_found")
    assert result.note is not None
    assert "no longer available" in result.note
    assert read(FakeSource([], fail_with=missing), failed_count=0).truncated is False


@pytest.mark.parametrize(
    "failure",
    [
        CommsServerError("Comms API list_errors failed (HTTP 500)", status=500),
        CommsThrottled("Comms API list_errors throttled (HTTP 429) after 4 attempts", status=429),
    ],
)
def test_api_failure_midway_keeps_what_was_read_and_marks_it(failure: Exception) -> None:
    result = read(FakeSource([page(errors(3), "t1")], fail_with=failure))
    assert result.tally.total == 3
    assert result.truncated is True
    assert result.note is not None
    assert "after 3 errors" in result.note
    assert type(failure).__name__ in result.note


def test_malformed_items_are_left_out_counted_and_mark_truncated() -> None:
    rig = Rig(FakeSource([page(errors(3), skipped=2)]))
    result = rig.run()
    assert result["errorCount"] == 3
    assert result["truncated"] is True
    assert rig.telemetry.counts[("MalformedErrorItems", None)] == 2


def test_read_failure_is_counted_and_the_summary_still_published() -> None:
    rig = Rig(FakeSource([], fail_with=CommsServerError("HTTP 500", status=500)))
    result = rig.run()
    assert result["published"] is True
    assert rig.telemetry.counts[("ErrorsReadFailures", None)] == 1
    assert all(t.delivered[0].note for t in rig.targets)


# -- settings and the webhook secret --------------------------------------------------------------------


def test_enricher_settings_from_env() -> None:
    options = EnricherSettings.from_env({"IDEMPOTENCY_TABLE_NAME": "t", "MAX_ERRORS": "50"})
    assert (options.max_errors, options.errors_page_size, options.idempotency_table_name) == (50, 1000, "t")
    with pytest.raises(SettingsError, match="MAX_ERRORS"):
        EnricherSettings.from_env({"IDEMPOTENCY_TABLE_NAME": "t", "MAX_ERRORS": "0"})
    with pytest.raises(SettingsError, match="IDEMPOTENCY_TABLE_NAME"):
        EnricherSettings.from_env({})


SECRET_URL = "https://hooks.slack.com/services/T0/B0/verysecret"


@pytest.mark.parametrize(
    "value",
    [SECRET_URL, f"  {SECRET_URL}\n", json.dumps({"webhookUrl": SECRET_URL}), SECRET_URL.encode()],
)
def test_webhook_url_plain_or_json(value: object) -> None:
    assert webhook_url_from_secret(value) == SECRET_URL


@pytest.mark.parametrize(
    "value",
    [
        "http://hooks.slack.com/services/T0/B0/verysecret",
        json.dumps({"url": SECRET_URL}),
        '{"webhookUrl": "http://10.0.0.1/verysecret"}',
        "{not json verysecret",
        "ftp://verysecret",
    ],
)
def test_bad_webhook_url_is_refused_without_echoing_it(value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        webhook_url_from_secret(value)
    assert "verysecret" not in str(caught.value)
    assert "SLACK_WEBHOOK_SECRET_ARN" in str(caught.value)


def test_loopback_http_webhook_is_allowed_for_local_runs() -> None:
    assert webhook_url_from_secret("http://127.0.0.1:8080/hook") == "http://127.0.0.1:8080/hook"
