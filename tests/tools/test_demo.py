"""``make demo`` end to end: the story through the simulator, moto server and both handlers.

The demo runs once, in a subprocess exactly as ``make demo`` starts it (with ``--json``), so that the
handlers' module state (Powertools loggers, cached clients) stays out of the test process. Every assertion
reads what crossed the bus and what reached Slack and the SNS queue.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from comms_bridge_tools.demo import (
    STORY_EXPECTATIONS,
    DemoResult,
    OperationRecord,
    check_story,
    schedule_seconds,
    sns_mail_text,
)
from comms_bridge_tools.lambda_runtime import LambdaContext, LambdaFunction
from comms_bridge_tools.timeline import slack_payload_text
from tests.support.schemas import detail_errors

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration

STATUS = "Email Operation Status Changed"
STATS = "Email Operation Stats Changed"
STALLED = "Email Operation Stalled"
SUMMARIZED = "Email Operation Errors Summarized"


@pytest.fixture(scope="module")
def demo_run() -> tuple[int, dict[str, Any], str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_ENDPOINT")}
    env["NO_COLOR"] = "1"
    completed = subprocess.run(
        [sys.executable, "-m", "comms_bridge_tools.demo", "--fast", "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert completed.stdout, completed.stderr[-3000:]
    return completed.returncode, json.loads(completed.stdout), completed.stderr


@pytest.fixture(scope="module")
def summary(demo_run: tuple[int, dict[str, Any], str]) -> dict[str, Any]:
    return demo_run[1]


def _operation(summary: dict[str, Any], name: str) -> dict[str, Any]:
    return next(op for op in summary["operations"] if op["name"] == name)


def _events(summary: dict[str, Any], name: str, detail_type: str | None = None) -> list[dict[str, Any]]:
    op_id = _operation(summary, name)["operationId"]
    return [
        e
        for e in summary["events"]
        if e["operationId"] == op_id and (detail_type is None or e["detailType"] == detail_type)
    ]


def test_the_story_runs_to_a_clean_summary(demo_run: tuple[int, dict[str, Any], str]) -> None:
    code, summary, transcript = demo_run
    assert summary["problems"] == []
    assert summary["ok"] is True
    assert code == 0
    assert summary["invocations"]["PollerFunction"] == summary["polls"]
    assert "The pipeline produced everything the story expects." in transcript
    assert "Summary:" in transcript
    assert "\x1b[" not in transcript  # NO_COLOR and no terminal: plain text


def test_every_event_matches_its_schema_and_keys_are_unique(summary: dict[str, Any]) -> None:
    assert summary["events"]
    for event in summary["events"]:
        assert event["source"] == "twilio.comms"
        assert detail_errors(event["detailType"], event["detail"]) == []
    keys = Counter(event["eventKey"] for event in summary["events"])
    assert [key for key, count in keys.items() if count > 1] == []


def test_the_high_failure_send_is_summarized_and_alerted_once_per_trigger(summary: dict[str, Any]) -> None:
    op_id = _operation(summary, "high-failure")["operationId"]
    summaries = _events(summary, "high-failure", SUMMARIZED)
    assert summaries
    triggers = {e["eventKey"]: e for e in summary["events"] if e["detailType"] in (STATUS, STATS)}
    for event in summaries:
        detail = event["detail"]
        trigger = triggers[detail["trigger"]["eventKey"]]
        assert trigger["operationId"] == op_id
        assert trigger["status"] == "COMPLETED"
        assert detail["errorCount"] == trigger["detail"]["stats"]["failed"]
        assert detail["errorGroups"][0]["code"] == 62001  # the story's most frequent error
    slack = [a for a in summary["alerts"] if a["channel"] == "slack" and a["operationId"] == op_id]
    sns = [a for a in summary["alerts"] if a["channel"] == "sns" and a["operationId"] == op_id]
    assert len(slack) == len(summaries) == len(sns)
    assert "120 of 1,000 emails failed" in slack[0]["body"]
    assert "120 of 1,000" in sns[0]["title"]


def test_the_errors_function_runs_only_when_the_rule_matches(summary: dict[str, Any]) -> None:
    # The only operation past both thresholds is high-failure; every errors invocation produced a summary,
    # except the one for the stall (the errors function alerts stalls too, and publishes nothing for them).
    summarized = {e["operationId"] for e in summary["events"] if e["detailType"] == SUMMARIZED}
    assert summarized == {_operation(summary, "high-failure")["operationId"]}
    assert summary["invocations"]["ErrorsFunction"] == len(
        [e for e in summary["events"] if e["detailType"] in (SUMMARIZED, STALLED)]
    )
    reminder = _operation(summary, "reminder")  # completes with 2 failed: below the count threshold
    assert reminder["statusPath"][-1] == "COMPLETED"
    assert not _events(summary, "reminder", SUMMARIZED)


def test_the_stalled_send_is_reported_once_and_alerted_formatted(summary: dict[str, Any]) -> None:
    """Before issue 13: one SNS mail holding the raw event JSON, nothing in Slack. After: one formatted
    alert in each."""
    stalls = _events(summary, "stalled", STALLED)
    assert len(stalls) == 1
    assert stalls[0]["detail"]["stalledForSeconds"] >= 1800
    op_id = _operation(summary, "stalled")["operationId"]
    alerts = sorted((a for a in summary["alerts"] if a["operationId"] == op_id), key=lambda a: a["channel"])
    assert [a["channel"] for a in alerts] == ["slack", "sns"]
    for alert in alerts:
        assert "Email Operation Stalled" in alert["body"]
        assert "progress for 30 minutes" in alert["body"]
        assert '"detail-type"' not in alert["body"]  # not the event's JSON


def test_statuses_and_late_stats(summary: dict[str, Any]) -> None:
    assert _operation(summary, "canceled")["statusPath"] == ["SCHEDULED", "CANCELED"]
    assert _operation(summary, "reminder")["statusPath"] == ["SCHEDULED", "PROCESSING", "COMPLETED"]
    late = [e for e in _events(summary, "late-opens", STATS) if e["detail"]["terminal"]]
    assert late and all(e["detail"]["delta"]["opened"] >= 0 for e in late)
    assert any(e["detail"]["delta"]["opened"] > 0 for e in late)
    for name in ("archived", "expiring", "yesterday"):  # recorded silently, or beyond retention
        assert _events(summary, name) == []


# -- the checks and renderers the demo relies on (no servers) ----------------------------------------------


def test_a_missing_alert_fails_the_story() -> None:
    result = DemoResult(scenario="story")
    for name in STORY_EXPECTATIONS:
        result.operations[name] = OperationRecord(name=name, operation_id=name)
    bad = result.operations["high-failure"]
    bad.observe(STATUS, {"status": "PROCESSING", "previousStatus": None})
    bad.observe(STATUS, {"status": "COMPLETED", "previousStatus": "PROCESSING"})
    bad.observe(SUMMARIZED, {"status": "COMPLETED"})
    problems = check_story(result, STORY_EXPECTATIONS)
    assert "high-failure: 1 error summaries but 0 Slack and 0 SNS alert(s)" in problems
    assert "stalled: no 'Email Operation Stalled' event" in problems
    assert "canceled: ended unseen, expected CANCELED" in problems


def test_schedule_expressions() -> None:
    assert schedule_seconds("rate(1 minute)") == 60
    assert schedule_seconds("rate(5 minutes)") == 300
    with pytest.raises(ValueError, match="rate"):
        schedule_seconds("cron(0 12 * * ? *)")


def test_alert_renderers() -> None:
    payload = {
        "text": "fallback",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "Email operation completed"}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": "*Total*\n800"}]},
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": "see <https://x.test/a|the console>"}],
            },
        ],
    }
    assert slack_payload_text(payload) == "Email operation completed\n*Total* 800\nsee the console"
    assert slack_payload_text({"text": "only text"}) == "only text"
    event = {"detail-type": STALLED, "source": "twilio.comms", "detail": {"operationId": "x", "stats": {}}}
    mail = sns_mail_text(json.dumps(event))
    assert '"operationId": "x"' in mail and "1 more detail fields" in mail
    assert sns_mail_text("plain words") == "plain words"


def test_lambda_context_counts_down_from_its_deadline() -> None:
    now = [100.0]
    context = LambdaContext(
        function_name="f",
        invoked_function_arn="arn",
        memory_limit_in_mb=256,
        deadline=160.0,
        monotonic=lambda: now[0],
    )
    assert context.get_remaining_time_in_millis() == 60_000
    now[0] = 170.0
    assert context.get_remaining_time_in_millis() == 0


def test_two_functions_keep_their_app_modules_and_environment_apart(tmp_path: Path) -> None:
    for name in ("one", "two"):
        code = tmp_path / "functions" / name
        code.mkdir(parents=True)
        (code / "helper.py").write_text(f"VALUE = {name!r}\n")
        (code / "app.py").write_text(
            "import os\nimport helper\n\n"
            "def lambda_handler(event, context):\n"
            "    return {'helper': helper.VALUE, 'env': os.environ['WHO'], 'event': event,\n"
            "            'name': context.function_name, 'left': context.get_remaining_time_in_millis() > 0}\n"
        )
    one = LambdaFunction("functions/one", environment={"WHO": "first"}, root=tmp_path, function_name="f-one")
    two = LambdaFunction("functions/two", environment={"WHO": "second"}, root=tmp_path)
    assert one.invoke({"n": 1}).result == {
        "helper": "one",
        "env": "first",
        "event": {"n": 1},
        "name": "f-one",
        "left": True,
    }
    assert two.invoke({}).result["helper"] == "two"
    assert one.invoke({}).result["env"] == "first"
    assert "helper" not in sys.modules and "WHO" not in os.environ
    failing = LambdaFunction("functions/none", environment={}, root=tmp_path)
    assert failing.invoke({}).error is not None


def test_the_push_option_puts_each_status_change_on_the_bus_within_seconds() -> None:
    """``make demo ARGS=--push``: the same story through the Event Streams consumer; every status change of
    the story reaches the bus by the push path 3 s after the change (2 s delivery, 1 s batching window),
    the story's checks still hold, and no eventKey is published twice."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_ENDPOINT")}
    env["NO_COLOR"] = "1"
    completed = subprocess.run(
        [sys.executable, "-m", "comms_bridge_tools.demo", "--fast", "--json", "--push"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.stdout, completed.stderr[-3000:]
    result = json.loads(completed.stdout)
    assert completed.returncode == 0 and result["ok"], result["problems"]
    assert result["invocations"].get("StreamFunction", 0) > 0
    assert result["push"] and all("push +3.0 s on the bus" in line for line in result["push"]), result["push"]
    keys = Counter(event["eventKey"] for event in result["events"])
    assert max(keys.values()) == 1
