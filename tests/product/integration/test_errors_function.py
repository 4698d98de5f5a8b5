"""functions/errors/app.lambda_handler invoked as Lambda would, against real HTTP on loopback.

AWS: moto server, provisioned from template.yaml by comms_bridge_tools.local_stack (the idempotency table, the
bus with a catch-all rule into SQS, the alert topic with an SQS subscription, the secrets the parameters name)
and the function's environment as the template sets it. Comms: the simulator, with the operation's errors
spread over several pages. Slack: the local receiver in tools/comms_bridge_tools/slack_receiver.py. Nothing of
ours is patched; faults come from the servers (simulator fault rules, receiver scripts, a deleted topic).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from comms_bridge.comms.models import EmailOperationStats, OperationStatus
from comms_bridge.enricher.alerts.slack import MAX_BLOCKS, MAX_SECTION_CHARS
from comms_bridge.enricher.alerts.sns import MAX_SUBJECT_CHARS
from comms_bridge.enricher.enricher import EnrichmentIncomplete
from comms_bridge.enricher.trigger import InvalidTriggerEvent
from comms_bridge.events.detail_types import DetailType
from comms_bridge.events.details import build_detail
from comms_bridge_tools.local_stack import LocalStack
from comms_bridge_tools.moto_server import MotoServer
from comms_bridge_tools.slack_receiver import WEBHOOK_PATH, SlackReceiver
from comms_sim import FaultRule, ManualClock, Scenario, SimulatorServer
from tests.support.schemas import validate_detail

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
APP_PATH = ROOT / "functions" / "errors" / "app.py"
SOURCE = "twilio.comms"  # the template's EventSource default
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 1, 5, 11, 0, tzinfo=UTC)
BAD_SEND = "comms_operation_01h9krwprkeee8fzqspvwy6nq8"
ARCHIVED = "comms_operation_01h9krwprkeee8fzqspvwy6nq9"
STUCK = "comms_operation_01h9krwprkeee8fzqspvwy6nqa"
FAILED = 250
PAGE_SIZE = 40
SECRET_TOKEN = WEBHOOK_PATH.rsplit("/", 1)[-1]

SCENARIO = {
    "name": "errors-function",
    "start": "2026-01-05T09:00:00Z",
    "now": "2h",
    "seed": 7,
    "operations": [
        {
            "name": "bad-send",
            "id": BAD_SEND,
            "created": "0s",
            "total": 1000,
            "duration": "5m",
            "step": "30s",
            "failed": FAILED,
            "undelivered": 10,
            "opened": 100,
            "errors": {62001: 5, 62004: 3, 62006: 1, 62007: 1},
        },
        {"name": "archived", "id": ARCHIVED, "created": "-8d", "total": 40, "duration": "2m", "failed": 20},
        {
            "name": "stuck",
            "id": STUCK,
            "created": "0s",
            "total": 500,
            "duration": "10h",
            "step": "30s",
            "stall": {"at": "30m", "for": None},
        },
    ],
}


# -- the Lambda side -----------------------------------------------------------------------------------


@dataclass
class LambdaContext:
    """What Powertools and the handler read from the real context."""

    function_name: str = "comms-bridge-errors"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:comms-bridge-errors"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    budget_seconds: float = 120.0
    _deadline: float = 0.0

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.budget_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self._deadline - time.monotonic()) * 1000), 0)


def load_handler_module() -> ModuleType:
    """A fresh import of functions/errors/app.py per test: a new execution environment (cold start)."""
    name = f"errors_app_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, APP_PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# -- the world -----------------------------------------------------------------------------------------


@dataclass
class World:
    sim: SimulatorServer
    slack: SlackReceiver
    stack: LocalStack
    env: dict[str, str]
    monkeypatch: pytest.MonkeyPatch
    module: ModuleType | None = None
    seen_events: list[dict[str, Any]] = field(default_factory=list)
    seen_mails: list[dict[str, Any]] = field(default_factory=list)

    def configure(self, **overrides: str | None) -> None:
        for key, value in overrides.items():
            if value is None:
                self.env.pop(key, None)
            else:
                self.env[key] = value

    def invoke(self, event: dict[str, Any], context: LambdaContext | None = None) -> Any:
        """Invoke like Lambda: same process (warm) after the first call."""
        for key, value in self.env.items():
            self.monkeypatch.setenv(key, value)
        if self.module is None:
            self.module = load_handler_module()
        return self.module.lambda_handler(event, context or LambdaContext())

    def cold(self) -> None:
        self.module = None

    def summaries(self) -> list[dict[str, Any]]:
        self.seen_events.extend(self.stack.drain(self.stack.capture_queue_url, wait=0))
        return [e for e in self.seen_events if e["detail-type"] == DetailType.ERRORS_SUMMARIZED.value]

    def mails(self) -> list[dict[str, Any]]:
        self.seen_mails.extend(self.stack.drain_alerts(wait=0))
        return self.seen_mails

    def errors_requests(self) -> int:
        return self.sim.count("list_errors")


@pytest.fixture
def world(aws_env: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    scenario = Scenario.from_dict(SCENARIO)
    with (
        SimulatorServer(scenario, clock=ManualClock(NOW)) as sim,
        SlackReceiver(retry_after="1", hang_seconds=3.0) as slack,
    ):
        stack = LocalStack.provision(
            aws_env.env(),
            prefix=f"errfn-{uuid.uuid4().hex[:8]}",
            parameters={"CommsApiBaseUrl": sim.base_url},
            twilio_secret={"accountSid": sim.account_sid, "authToken": sim.auth_token},
            slack_webhook_url=json.dumps({"webhookUrl": slack.url}),
        )
        env = {
            **stack.function_environment("ErrorsFunction"),
            "AWS_LAMBDA_FUNCTION_NAME": str(stack.resource_names["ErrorsFunction"]),  # Lambda sets it
            # Tuning the template leaves at its defaults: several pages per operation, and a Slack timeout
            # that the receiver's "hang" script outlasts.
            "ERRORS_PAGE_SIZE": str(PAGE_SIZE),
            "SLACK_TIMEOUT_SECONDS": "0.5",
        }
        for key in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"):
            monkeypatch.delenv(key, raising=False)
        yield World(sim=sim, slack=slack, stack=stack, env=env, monkeypatch=monkeypatch)


def trigger_event(
    sim: SimulatorServer, operation_id: str = BAD_SEND, *, event_key: str | None = None, **envelope: Any
) -> dict[str, Any]:
    """A Status Changed event as the poller would publish it, from the simulator's ground truth."""
    truth = sim.operation(operation_id)
    if truth is None:  # past retention: the poller saw it before; counters as it saw them
        truth = {
            "status": "COMPLETED",
            "stats": dict.fromkeys(EmailOperationStats.model_fields, 0)
            | {"total": 40, "sent": 40, "failed": 20},
            "createdAt": "2025-12-28T09:00:00Z",
            "updatedAt": "2025-12-28T09:02:00Z",
        }
    stats = EmailOperationStats.model_validate(truth["stats"])
    detail = build_detail(
        event_key=event_key or uuid.uuid4().hex,
        account_sid=sim.account_sid,
        operation_id=operation_id,
        status=OperationStatus(truth["status"]),
        previous_status=OperationStatus.PROCESSING,
        stats=stats,
        previous_stats=None,
        created_at=truth["createdAt"],
        updated_at=truth["updatedAt"],
        observed_at=NOW,
    )
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": DetailType.STATUS_CHANGED.value,
        "source": SOURCE,
        "account": "123456789012",
        "time": "2026-01-05T11:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    } | envelope


def slack_text(post: Any) -> str:
    return json.dumps(post.body, ensure_ascii=False)


# -- happy path and exactly-once -----------------------------------------------------------------------


def test_happy_path_summary_mail_and_slack(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    event = trigger_event(world.sim)
    result = world.invoke(event)

    assert result["alerts"] == {"sns": "sent", "slack": "sent"}
    assert world.errors_requests() == -(-FAILED // PAGE_SIZE)  # several pages, each fetched once

    (summary,) = world.summaries()
    validate_detail(summary["detail-type"], summary["detail"])
    detail = summary["detail"]
    assert detail["errorCount"] == FAILED
    assert detail["truncated"] is False
    assert detail["operationId"] == BAD_SEND
    assert detail["trigger"] == {
        "detailType": DetailType.STATUS_CHANGED.value,
        "eventKey": event["detail"]["eventKey"],
    }
    truth = world.sim.errors(BAD_SEND)
    expected: dict[int, int] = {}
    for item in truth:
        expected[item["code"]] = expected.get(item["code"], 0) + 1
    assert [(g["code"], g["count"]) for g in detail["errorGroups"]] == sorted(
        expected.items(), key=lambda kv: -kv[1]
    )
    assert all(1 <= len(g["sampleEmailIds"]) <= 5 for g in detail["errorGroups"])
    assert result["eventKey"] == detail["eventKey"]

    (mail,) = world.mails()
    assert len(mail["Subject"]) <= MAX_SUBJECT_CHARS
    assert "250 of 1,000 emails failed (25.0%)" in mail["Subject"]
    assert BAD_SEND in mail["Message"]
    assert "62001" in mail["Message"]

    (post,) = world.slack.posts
    assert post.answered == "ok"
    assert len(post.blocks) <= MAX_BLOCKS
    assert all(len(b.get("text", {}).get("text", "")) <= MAX_SECTION_CHARS for b in post.blocks)
    assert BAD_SEND in slack_text(post)
    assert "The recipient address is invalid." in slack_text(post)

    output = capsys.readouterr()
    assert SECRET_TOKEN not in output.out + output.err
    assert world.sim.auth_token not in output.out + output.err
    assert '"AlertsSent"' in output.out  # EMF metrics reach stdout


class _Counted(logging.Handler):
    """The ``counted`` log lines of the errors enricher (counts that are not metrics): (counter, value)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: list[tuple[str, int]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "counted":
            self.counts.append((record.__dict__["counter"], record.__dict__["value"]))


@pytest.fixture
def counted() -> Iterator[_Counted]:
    handler = _Counted()
    library = logging.getLogger("comms_bridge.enricher.adapters")
    library.addHandler(handler)
    try:
        yield handler
    finally:
        library.removeHandler(handler)


def test_duplicate_event_alerts_each_target_once(world: World, counted: _Counted) -> None:
    event = trigger_event(world.sim)
    first = world.invoke(event)
    duplicate = dict(event, id=str(uuid.uuid4()))  # EventBridge re-delivery: new id, same detail
    second = world.invoke(duplicate)
    world.cold()
    third = world.invoke(event)  # another execution environment

    assert first == second == third
    assert len(world.summaries()) == 1
    assert len(world.mails()) == 1
    assert len(world.slack.posts) == 1
    assert world.errors_requests() == -(-FAILED // PAGE_SIZE)
    assert counted.counts.count(("DuplicateTriggers", 1)) == 2  # logged, not a metric


def test_sns_refusing_for_good_is_counted_for_the_alarm_and_not_retried(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.stack.client("sns").delete_topic(TopicArn=world.stack.alert_topic_arn)  # SNS answers NotFound
    event = trigger_event(world.sim)

    result = world.invoke(event)

    assert result["alerts"] == {"sns": "failed", "slack": "sent"}
    assert '"PermanentAlertFailures":[1.0]' in capsys.readouterr().out  # PermanentAlertFailuresAlarm
    assert len(world.summaries()) == 1
    assert len(world.slack.posts) == 1
    # The same trigger again (a duplicate delivery) is answered from its record: nothing sent twice.
    world.stack.create_topic("AlertTopic")
    assert world.invoke(event) == result
    assert world.mails() == []
    assert len(world.slack.posts) == 1


# -- bad input ----------------------------------------------------------------------------------------


def test_event_not_ours_is_refused_without_alerts(world: World) -> None:
    event = trigger_event(world.sim, source="aws.ec2")
    with pytest.raises(InvalidTriggerEvent, match=r"source: expected 'twilio\.comms'"):
        world.invoke(event)
    summary = trigger_event(world.sim, **{"detail-type": DetailType.ERRORS_SUMMARIZED.value})
    with pytest.raises(InvalidTriggerEvent, match="detail-type"):
        world.invoke(summary)
    assert world.summaries() == []
    assert world.mails() == []
    assert world.slack.posts == []
    assert world.errors_requests() == 0


def test_event_missing_a_field_names_it(world: World) -> None:
    event = trigger_event(world.sim)
    del event["detail"]["stats"]["failed"]
    with pytest.raises(InvalidTriggerEvent, match=r"detail\.stats\.failed: field required"):
        world.invoke(event)
    del event["detail"]["eventKey"]
    with pytest.raises(InvalidTriggerEvent, match=r"detail\.eventKey: field required"):
        world.invoke(event)
    assert world.summaries() == []
    assert world.slack.posts == []
    assert world.mails() == []


def test_operation_the_api_no_longer_knows_alerts_nobody(world: World, counted: _Counted) -> None:
    # Past retention the API answers 404 for the operation itself: the trigger cannot be confirmed
    # (contract §6), so nothing is read, published or alerted, and it is counted.
    result = world.invoke(trigger_event(world.sim, ARCHIVED))
    assert result["confirmed"] is False
    assert result["reason"] == "unknown_operation"
    assert ("UnconfirmedTriggers", 1) in counted.counts
    assert world.summaries() == []
    assert world.mails() == []
    assert world.slack.posts == []
    assert world.errors_requests() == 0


# -- Comms API faults -------------------------------------------------------------------------------------


def test_errors_endpoint_429_then_503_are_retried_by_the_client(world: World) -> None:
    world.sim.faults.add(FaultRule(kind="429", endpoint="list_errors", times=1, retry_after="0"))
    world.sim.faults.add(FaultRule(kind="503", endpoint="list_errors", skip=2, times=1, retry_after="0"))
    world.invoke(trigger_event(world.sim))
    (summary,) = world.summaries()
    assert summary["detail"]["errorCount"] == FAILED
    assert summary["detail"]["truncated"] is False
    assert world.errors_requests() == -(-FAILED // PAGE_SIZE) + 2


def test_errors_endpoint_throttling_for_good_gives_a_partial_summary(world: World) -> None:
    world.sim.faults.add(FaultRule(kind="503", endpoint="list_errors", skip=2, retry_after="0"))
    result = world.invoke(trigger_event(world.sim))
    (summary,) = world.summaries()
    assert summary["detail"]["errorCount"] == 2 * PAGE_SIZE
    assert summary["detail"]["truncated"] is True
    assert result["alerts"] == {"sns": "sent", "slack": "sent"}
    assert "CommsThrottled" in world.mails()[0]["Message"]


def test_errors_endpoint_500_midway_gives_a_partial_summary(world: World) -> None:
    world.sim.faults.add(FaultRule(kind="500", endpoint="list_errors", skip=1))
    world.invoke(trigger_event(world.sim))
    (summary,) = world.summaries()
    validate_detail(summary["detail-type"], summary["detail"])
    assert summary["detail"]["errorCount"] == PAGE_SIZE
    assert summary["detail"]["truncated"] is True
    assert world.errors_requests() == 2  # 500 is not retried
    (mail,) = world.mails()
    assert "Reading the error list failed after 40 errors (CommsServerError, HTTP 500)" in " ".join(
        mail["Message"].split()
    )


def test_malformed_error_items_are_left_out(world: World) -> None:
    world.sim.faults.add(
        FaultRule(kind="bad_items", endpoint="list_errors", times=1, items=3, mutation="string_code")
    )
    world.invoke(trigger_event(world.sim))
    (summary,) = world.summaries()
    validate_detail(summary["detail-type"], summary["detail"])
    assert summary["detail"]["errorCount"] == FAILED - 3
    assert summary["detail"]["truncated"] is True
    assert "3 malformed error item(s)" in " ".join(world.mails()[0]["Message"].split())


def test_max_errors_bounds_the_reading(world: World) -> None:
    world.configure(MAX_ERRORS="100")
    world.invoke(trigger_event(world.sim))
    (summary,) = world.summaries()
    assert summary["detail"]["errorCount"] == 100
    assert summary["detail"]["truncated"] is True
    assert world.errors_requests() == 3


def test_little_time_left_stops_reading_early(world: World) -> None:
    # The whole budget is margin: the first page is read, then reading stops.
    world.configure(ERRORS_SAFETY_MARGIN_SECONDS="120")
    result = world.invoke(trigger_event(world.sim), LambdaContext(budget_seconds=120))
    (summary,) = world.summaries()
    assert summary["detail"]["truncated"] is True
    assert summary["detail"]["errorCount"] == PAGE_SIZE
    assert world.errors_requests() == 1
    assert result["alerts"] == {"sns": "sent", "slack": "sent"}
    assert "to stay within the time limit" in " ".join(world.mails()[0]["Message"].split())


# -- Slack faults ---------------------------------------------------------------------------------------


def test_slack_429_waits_retry_after_and_posts_once(world: World) -> None:
    world.slack.script("429")
    result = world.invoke(trigger_event(world.sim))
    assert result["alerts"]["slack"] == "sent"
    assert [p.answered for p in world.slack.posts] == ["429", "ok"]
    assert len(world.slack.delivered) == 1


def test_slack_429_until_out_of_attempts_is_retried_by_lambda(world: World) -> None:
    world.slack.retry_after = "0"
    world.slack.script("429", "429", "429")
    event = trigger_event(world.sim)
    with pytest.raises(EnrichmentIncomplete, match=r"slack alert: Slack webhook throttled"):
        world.invoke(event)
    assert len(world.mails()) == 1
    result = world.invoke(event)
    assert result["alerts"] == {"sns": "sent", "slack": "sent"}
    assert len(world.slack.delivered) == 1
    assert len(world.mails()) == 1
    assert len(world.summaries()) == 1


@pytest.mark.parametrize("behaviour", ["500", "hang"])
def test_slack_transient_failure_is_posted_again_until_slack_has_it(
    world: World, behaviour: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Contract §4: a 5xx or a timeout is transient. Slack may have posted it: a second copy is the price
    # of never losing the alert.
    world.slack.script(behaviour)
    event = trigger_event(world.sim)
    result = world.invoke(event)
    assert result["alerts"] == {"sns": "sent", "slack": "sent"}
    assert world.invoke(event) == result  # a duplicate does not post again
    assert [p.answered for p in world.slack.posts] == [behaviour, "ok"]
    assert len(world.mails()) == 1
    assert len(world.summaries()) == 1
    output = capsys.readouterr()
    assert '"PermanentAlertFailures"' not in output.out
    assert SECRET_TOKEN not in output.out + output.err


def test_slack_permanent_failure_is_counted_for_the_alarm_and_not_retried(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.slack.script("400")
    event = trigger_event(world.sim)
    result = world.invoke(event)
    assert result["alerts"] == {"sns": "sent", "slack": "failed"}
    assert world.invoke(event) == result
    assert [p.answered for p in world.slack.posts] == ["400"]
    output = capsys.readouterr()
    assert '"PermanentAlertFailures":[1.0]' in output.out
    assert SECRET_TOKEN not in output.out + output.err


def test_insecure_webhook_url_is_refused_without_showing_it(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    arn = world.stack.create_secret("insecure-slack", f"http://hooks.example.com/{SECRET_TOKEN}")
    world.configure(SLACK_WEBHOOK_SECRET_ARN=arn)
    with pytest.raises(EnrichmentIncomplete) as caught:
        world.invoke(trigger_event(world.sim))
    assert "https://" in str(caught.value)
    assert SECRET_TOKEN not in str(caught.value)
    output = capsys.readouterr()
    assert SECRET_TOKEN not in output.out + output.err
    assert world.slack.posts == []
    assert len(world.mails()) == 1


def test_only_the_configured_targets_are_alerted(world: World) -> None:
    world.configure(SLACK_WEBHOOK_SECRET_ARN=None, ALERT_TOPIC_ARN="")
    result = world.invoke(trigger_event(world.sim))
    assert result["alerts"] == {}
    assert len(world.summaries()) == 1
    assert world.slack.posts == []
    assert world.mails() == []


def test_debug_logging_never_shows_secrets(
    world: World, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    world.configure(POWERTOOLS_LOG_LEVEL="DEBUG")
    world.slack.script("500")
    world.invoke(trigger_event(world.sim))
    output = capsys.readouterr()
    everything = caplog.text + output.out + output.err
    assert "errors summarized" in everything
    assert SECRET_TOKEN not in everything
    assert world.sim.auth_token not in everything


# -- through the errors queue (contract §6) -------------------------------------------------------------


def queue_batch(world: World, *events: dict[str, Any]) -> dict[str, Any]:
    """Put the events on the template's ErrorsQueue (as the rules do) and receive them as the event source
    mapping does: the SQS event Lambda passes to the handler."""
    sqs = world.stack.client("sqs")
    url = str(world.stack.resource_names["ErrorsQueue.QueueUrl"])
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for event in events:
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(event))
    messages: list[dict[str, Any]] = []
    while len(messages) < len(events):
        messages += sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }


def forged(event: dict[str, Any], **detail: Any) -> dict[str, Any]:
    return event | {"detail": event["detail"] | {"eventKey": uuid.uuid4().hex} | detail}


def test_a_queue_batch_alerts_what_the_api_confirms_and_nothing_forged(
    world: World, counted: _Counted
) -> None:
    """Before: a forged event alerted "1,000,000 of 1,000,000 emails failed", a foreign accountSid was
    alerted. After: the API's numbers are shown, the foreign account and the unknown operation alert
    nobody."""
    real = trigger_event(world.sim)
    million = dict.fromkeys(EmailOperationStats.model_fields, 0) | {
        "total": 1_000_000,
        "recipients": 1_000_000,
        "attempts": 1_000_000,
        "failed": 1_000_000,
    }
    inflated = forged(real, stats=million, rates={"failed": 1.0})
    foreign = forged(real, accountSid="AC" + "f" * 32)
    unknown = forged(real, operationId="comms_operation_01h9krwprkeee8fzqspvwy6zzz")

    response = world.invoke(queue_batch(world, inflated, foreign, unknown))

    assert response == {"batchItemFailures": []}
    (summary,) = world.summaries()
    assert summary["detail"]["stats"]["failed"] == FAILED
    (mail,) = world.mails()
    (post,) = world.slack.posts
    assert "250 of 1,000 emails failed" in mail["Subject"]
    assert "1,000,000" not in mail["Subject"] + mail["Message"] + slack_text(post)
    assert counted.counts.count(("UnconfirmedTriggers", 1)) == 2  # one log line each


def test_a_record_whose_alert_failed_transiently_comes_back_and_alerts_once(world: World) -> None:
    world.slack.retry_after = "0"
    world.slack.script("429", "429", "429")
    event = trigger_event(world.sim)

    first = world.invoke(queue_batch(world, event))

    (failure,) = first["batchItemFailures"]
    # The queue delivers the record again after its visibility timeout; only Slack is still missing.
    assert world.invoke(queue_batch(world, event)) == {"batchItemFailures": []}
    assert len(world.slack.delivered) == 1
    assert len(world.mails()) == 1
    assert len(world.summaries()) == 1
    assert failure["itemIdentifier"]


# -- Stalled (contract §4) -------------------------------------------------------------------------------


def stall_event(world: World) -> dict[str, Any]:
    """A *Stalled* event as the poller publishes it for the simulator's stuck operation."""
    event = trigger_event(world.sim, STUCK, **{"detail-type": DetailType.STALLED.value})
    event["detail"] |= {"stalledForSeconds": 5400, "status": "PROCESSING", "previousStatus": "PROCESSING"}
    return event


def test_a_stall_is_confirmed_and_alerted_formatted_once(world: World) -> None:
    """Before: the stall reached e-mail as the raw event JSON and never reached Slack. After: one formatted
    alert in each, from the API's numbers, and nothing again for the same eventKey."""
    event = stall_event(world)
    result = world.invoke(event)
    assert result["alerts"] == {"sns": "sent", "slack": "sent"}
    assert world.invoke(event) == result
    (mail,) = world.mails()
    (post,) = world.slack.posts
    assert mail["Subject"].startswith("[comms-bridge] Stalled, no progress for 1 hour 30 minutes")
    assert '"detail-type"' not in mail["Message"]
    assert STUCK in slack_text(post)
    assert "no progress for 1 hour 30 minutes" in slack_text(post)
    assert world.summaries() == []  # a stall publishes nothing
    assert world.errors_requests() == 0


def test_a_stall_that_moved_since_alerts_nobody(world: World) -> None:
    event = stall_event(world)
    event["detail"]["updatedAt"] = "2026-01-05T09:10:00Z"  # not the operation's updatedAt any more
    result = world.invoke(event)
    assert (result["confirmed"], result["reason"]) == (False, "moved_since")
    assert world.mails() == []
    assert world.slack.posts == []
