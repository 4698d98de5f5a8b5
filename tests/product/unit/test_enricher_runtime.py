"""EnricherRuntime with fakes: what ``from_env`` wires for which settings, and how a replayed trigger is
told apart from a run (Powertools' ``response_hook``), Powertools' idempotency running on an in-memory
store."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from comms_bridge.enricher.enricher import EnrichmentIncomplete
from comms_bridge.enricher.ports import AlertFailed
from comms_bridge.enricher.runtime import DEFAULT_FUNCTION_NAME, EnricherRuntime
from comms_bridge.enricher.settings import DEFAULT_IDEMPOTENCY_TTL_SECONDS, EnricherSettings
from comms_bridge.enricher.trigger import InvalidTriggerEvent
from comms_bridge.settings import SettingsError
from tests.support.enricher_fakes import (
    Counter,
    FakeComms,
    FakeSink,
    FakeSource,
    FakeTarget,
    MemoryBudget,
    MemoryPersistenceLayer,
    errors,
    operation,
    page,
)
from tests.support.operation_factory import ACCOUNT_SID

SAMPLE = Path(__file__).resolve().parents[3] / "events" / "errors-trigger.json"
TOPIC = "arn:aws:sns:us-east-1:123456789012:comms-bridge-AlertTopic"
SLACK_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:slack-AbCdEf"
ENV = {"IDEMPOTENCY_TABLE_NAME": "comms-bridge-IdempotencyTable"}
DUPLICATE = ("DuplicateTriggers", None)


def sample_event(**detail: Any) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(SAMPLE.read_text(encoding="utf-8"))
    event["detail"].update(detail)
    return event


# -- wiring ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, []),
        ({"ALERT_TOPIC_ARN": TOPIC}, ["sns"]),
        ({"SLACK_WEBHOOK_SECRET_ARN": SLACK_SECRET}, ["slack"]),
        ({"ALERT_TOPIC_ARN": TOPIC, "SLACK_WEBHOOK_SECRET_ARN": SLACK_SECRET}, ["sns", "slack"]),
        ({"ALERT_TOPIC_ARN": "", "SLACK_WEBHOOK_SECRET_ARN": ""}, []),  # the template's empty parameter
    ],
)
def test_each_configured_target_and_only_those(overrides: dict[str, str], expected: list[str]) -> None:
    runtime = EnricherRuntime.from_env(Counter(), environ={**ENV, **overrides})
    assert [target.name for target in runtime.ports.alert_targets(lambda: 10.0, ACCOUNT_SID)] == expected
    assert (runtime.ports.sns is not None) == ("sns" in expected)  # no SNS client without a topic


def test_records_are_named_after_the_function_and_kept_for_the_ttl() -> None:
    runtime = EnricherRuntime.from_env(
        Counter(),
        environ={**ENV, "AWS_LAMBDA_FUNCTION_NAME": "stack-errors", "IDEMPOTENCY_TTL_SECONDS": "3600"},
    )
    assert runtime.key_prefix == "stack-errors#errors"
    assert runtime.trigger_config.event_key_jmespath == "detail.eventKey"
    assert runtime.trigger_config.expires_after_seconds == 3600
    assert runtime.step_config.expires_after_seconds == 3600
    assert runtime.step_config.response_hook is None  # a replayed step is a retry, not a duplicate

    local = EnricherRuntime.from_env(Counter(), environ=ENV)
    assert local.key_prefix == f"{DEFAULT_FUNCTION_NAME}#errors"
    assert local.trigger_config.expires_after_seconds == DEFAULT_IDEMPOTENCY_TTL_SECONDS


def test_settings_are_checked_before_anything_is_built() -> None:
    with pytest.raises(SettingsError, match="IDEMPOTENCY_TABLE_NAME"):
        EnricherRuntime.from_env(Counter(), environ={})
    with pytest.raises(SettingsError, match="COMMS_API_BASE_URL"):
        EnricherRuntime.from_env(
            Counter(), environ={**ENV, "COMMS_API_BASE_URL": "http://comms.twilio.com/v1"}
        )


# -- replays -------------------------------------------------------------------------------------------


OPERATION_ID = "comms_operation_52yfjxxdab954gq5z2zza5sv9a"  # the sample's operation


class FakePorts:
    def __init__(self, source: FakeSource, targets: list[FakeTarget]) -> None:
        self.source = source
        self.comms = FakeComms({OPERATION_ID: operation(OPERATION_ID)}, errors=source)
        self.sink = FakeSink()
        self.targets = targets
        self.budget = MemoryBudget()

    def errors_source(self, time_left: Callable[[], float], account_sid: str) -> FakeComms:
        return self.comms

    def alert_budget(self, prefix: str) -> MemoryBudget:
        return self.budget

    def summary_sink(self, time_left: Callable[[], float]) -> FakeSink:
        return self.sink

    def alert_targets(self, time_left: Callable[[], float], account_sid: str) -> list[FakeTarget]:
        return list(self.targets)


class FakeContext:
    def get_remaining_time_in_millis(self) -> int:
        return 60_000


class Rig:
    def __init__(self, targets: list[FakeTarget] | None = None) -> None:
        targets = targets if targets is not None else [FakeTarget("sns"), FakeTarget("slack")]
        self.ports = FakePorts(FakeSource([page(errors(3))]), targets)
        self.telemetry = Counter()
        self.runtime = EnricherRuntime(
            ports=self.ports,
            options=EnricherSettings(idempotency_table_name="memory"),
            event_source="twilio.comms",
            telemetry=self.telemetry,
            trigger_store=MemoryPersistenceLayer(),
            step_store=MemoryPersistenceLayer(),
            function_name="test-errors",
        )

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        return self.runtime.handle(event, self.runtime.parse(event), FakeContext())


def test_a_duplicate_trigger_is_answered_from_its_record_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="comms_bridge")
    rig = Rig()
    event = sample_event()
    first = rig.invoke(event)
    assert DUPLICATE not in rig.telemetry.counts
    assert "duplicate trigger" not in caplog.text

    redelivered = copy.deepcopy(event) | {"id": "another-delivery"}  # EventBridge: new id, same detail
    assert rig.invoke(redelivered) == first
    assert rig.invoke(event) == first
    assert rig.telemetry.counts[DUPLICATE] == 2
    assert caplog.text.count("duplicate trigger: returning the stored result, nothing sent again") == 2
    assert rig.ports.source.calls == 1
    assert len(rig.ports.sink.published) == 1
    assert [target.attempts for target in rig.ports.targets] == [1, 1]


def test_another_event_key_is_a_run_not_a_replay() -> None:
    rig = Rig()
    rig.invoke(sample_event())
    rig.invoke(sample_event(eventKey="0" * 32))
    assert DUPLICATE not in rig.telemetry.counts
    assert rig.ports.source.calls == 2
    assert len(rig.ports.sink.published) == 2


def test_a_retry_after_a_partial_failure_runs_again_and_is_not_a_duplicate() -> None:
    sns = FakeTarget("sns", [AlertFailed("SNS Publish failed: NotFound", retryable=True, kind="NotFound")])
    rig = Rig([sns, FakeTarget("slack")])
    event = sample_event()
    with pytest.raises(EnrichmentIncomplete, match="sns alert"):
        rig.invoke(event)

    result = rig.invoke(event)  # Lambda's retry: the finished steps come from their own records
    assert result["alerts"] == {"sns": "sent", "slack": "sent"}
    assert DUPLICATE not in rig.telemetry.counts
    assert rig.ports.source.calls == 1
    assert [target.attempts for target in rig.ports.targets] == [2, 1]

    assert rig.invoke(event) == result  # only now is the trigger's record complete
    assert rig.telemetry.counts[DUPLICATE] == 1


def test_an_invalid_trigger_is_counted_logged_and_raised(caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig()
    with pytest.raises(InvalidTriggerEvent, match=r"source: expected 'twilio\.comms'"):
        rig.runtime.parse(sample_event() | {"source": "aws.ec2"})
    assert rig.telemetry.counts == {("InvalidTriggerEvents", None): 1}
    assert "trigger event rejected" in caplog.text
