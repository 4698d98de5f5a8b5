"""``comms-bridge`` against the Comms API simulator and a stack provisioned from template.yaml in moto."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import boto3
import pytest

from comms_bridge_tools.cli import main
from comms_bridge_tools.local_stack import LocalStack
from comms_bridge_tools.moto_server import MotoServer
from comms_sim import STORY_START, ManualClock, Scenario, SimulatorServer

pytestmark = pytest.mark.integration

ACCOUNT_SID = "AC" + "c1" * 16
AUTH_TOKEN = "cli-test-token-0000000000000000"


def _api_time(minutes: int) -> str:
    return (STORY_START + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Deployment:
    sim: SimulatorServer
    clock: ManualClock
    stack: LocalStack

    def run(self, *argv: str) -> tuple[int, str]:
        out = io.StringIO()
        code = main(list(argv), out=out)
        return code, out.getvalue()

    def json(self, *argv: str) -> Any:
        code, text = self.run(*argv, "--json")
        assert code == 0, text
        return json.loads(text)

    def published(self) -> list[dict[str, Any]]:
        return self.stack.drain(self.stack.capture_queue_url, wait=0)


@pytest.fixture
def deployment(aws_env: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployment]:
    clock = ManualClock(STORY_START)
    sim = SimulatorServer(Scenario.story(), clock=clock, credentials={ACCOUNT_SID: AUTH_TOKEN}).start()
    try:
        stack = LocalStack.provision(
            boto3.session.Session(),
            prefix=f"cli-{uuid.uuid4().hex[:8]}",
            parameters={"CommsApiBaseUrl": sim.base_url},
            twilio_secret={"accountSid": ACCOUNT_SID, "authToken": AUTH_TOKEN},
        )
        # The operator's shell holds what the deployed poller gets from the template (secret ARN included).
        for name, value in stack.function_environment("PollerFunction").items():
            monkeypatch.setenv(name, value)
        yield Deployment(sim=sim, clock=clock, stack=stack)
    finally:
        sim.stop()


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["poll"],
        ["checkpoint"],
        ["checkpoint", "show"],
        ["checkpoint", "reset"],
        ["operations"],
        ["operations", "list"],
    ],
)
def test_help_on_every_command(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: comms-bridge {' '.join(argv)}".rstrip())
    if argv in (["poll"], ["checkpoint", "reset"]):
        assert ("--dry-run" if argv == ["poll"] else "--yes") in text
        assert "TWILIO_SECRET_ARN" in text


def test_dry_run_prints_what_the_real_run_publishes_and_writes_nothing(deployment: Deployment) -> None:
    assert deployment.run("checkpoint", "show")[1].startswith("no checkpoint")
    dry = deployment.json("poll", "--dry-run")
    assert dry["summary"]["status"] == "complete"
    assert deployment.run("checkpoint", "show")[1].startswith("no checkpoint")  # nothing written

    code, text = deployment.run("poll")
    assert code == 0, text
    before = deployment.json("checkpoint", "show")
    assert before["lastRunAt"] == _api_time(0)

    deployment.clock.advance(180)
    first = deployment.json("poll", "--dry-run")
    second = deployment.json("poll", "--dry-run")
    keys = [event["detail"]["eventKey"] for event in first["events"]]
    assert keys and keys == [event["detail"]["eventKey"] for event in second["events"]]
    assert {event["detail-type"] for event in first["events"]} <= {
        "Email Operation Status Changed",
        "Email Operation Stats Changed",
    }
    assert deployment.published() == []
    assert deployment.json("checkpoint", "show") == before

    code, text = deployment.run("poll", "--dry-run")
    assert code == 0
    assert f"dry run: {len(keys)} event(s) would be published" in text

    real = deployment.json("poll")
    assert real["summary"]["events_published"] == len(keys)
    assert sorted(e["detail"]["eventKey"] for e in deployment.published()) == sorted(keys)
    assert deployment.json("checkpoint", "show")["lastRunAt"] == _api_time(3)


def test_operations_list_shows_what_is_not_terminal(deployment: Deployment) -> None:
    assert deployment.run("operations", "list")[1].startswith("no operations tracked")
    deployment.run("poll")
    deployment.clock.advance(300)
    deployment.run("poll")
    listed = deployment.json("operations", "list")
    truth = {
        op["id"]: op["status"]
        for op in deployment.sim.operations()
        if op["status"] in ("SCHEDULED", "PROCESSING")
    }
    assert {op["operation_id"]: op["status"] for op in listed} == truth
    assert deployment.sim.operation_id("stalled") in truth
    text = deployment.run("operations", "list")[1]
    assert text.splitlines()[0].split()[:3] == ["operation", "status", "sent"]
    assert deployment.sim.operation_id("reminder") in text


def test_checkpoint_reset_asks_then_deletes_without_republishing(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment.run("poll")
    deployment.clock.advance(120)
    deployment.run("poll")
    deployment.published()

    code, _ = deployment.run("checkpoint", "reset")  # stdin is not a terminal under pytest
    assert code == 2
    assert "--yes" in capsys.readouterr().err
    assert deployment.json("checkpoint", "show") is not None

    code, text = deployment.run("checkpoint", "reset", "--yes")
    assert code == 0 and text.startswith("checkpoint deleted")
    assert deployment.run("checkpoint", "show")[1].startswith("no checkpoint")

    code, text = deployment.run("poll")  # the recorded states are kept: nothing is published again
    assert code == 0, text
    assert deployment.published() == []
    assert deployment.json("checkpoint", "show")["lastRunAt"] == _api_time(2)


def test_credentials_from_the_environment_and_configuration_errors(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TWILIO_SECRET_ARN")
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", ACCOUNT_SID)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    code, text = deployment.run("poll", "--dry-run")
    assert code == 0, text

    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "wrong-token")
    code, text = deployment.run("poll")
    # A run that cannot authenticate raises (in Lambda: the function's error alarm); the CLI says so, exit 2.
    assert code == 2
    assert "HTTP 401" in capsys.readouterr().err and "wrong-token" not in text

    monkeypatch.delenv("STATE_TABLE_NAME")
    code, _ = deployment.run("checkpoint", "show")
    assert code == 2
    assert "STATE_TABLE_NAME" in capsys.readouterr().err


# ---------------------------------------------------------------- mistakes: one line on stderr, exit 2


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (
            ["checkpoint", "show"],
            {"STATE_TABLE_NAME": "no-such-table"},
            "table 'no-such-table' not found in us-east-1: set STATE_TABLE_NAME to the stack's",
        ),
        (
            ["poll"],
            {"STATE_TABLE_NAME": "no-such-table"},
            "table 'no-such-table' not found in us-east-1",
        ),
        (
            ["poll"],
            {"EVENT_BUS_NAME": None},
            "EVENT_BUS_NAME is not set: set it to the stack's bus (output EventBusName)",
        ),
        (
            ["poll", "--dry-run"],
            {"STALL_AFTER_SECONDS": "soon"},
            "comms-bridge: invalid environment: STALL_AFTER_SECONDS: must be a whole number\n",
        ),
        (
            ["poll", "--dry-run"],
            {"BOOTSTRAP_MODE": "replay"},
            "BOOTSTRAP_MODE: must be one of 'baseline' or 'emit'",
        ),
        (
            ["operations", "list"],
            {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"},
            "could not read the Twilio secret (TWILIO_SECRET_ARN) in us-east-1: cannot reach 127.0.0.1:9: "
            "connection refused",
        ),
        (
            ["poll", "--dry-run"],
            {"TWILIO_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:missing-AbCdEf"},
            "in us-east-1: ResourceNotFoundException: Secrets Manager can't find the specified secret",
        ),
        (
            ["checkpoint", "show"],
            {"AWS_REGION": None, "AWS_DEFAULT_REGION": None, "TWILIO_SECRET_ARN": None},
            "comms-bridge: AWS: no AWS region is set: set AWS_REGION\n",
        ),
    ],
    ids=[
        "table-not-found",
        "table-not-found-in-a-run",
        "no-bus-no-publish",
        "invalid-number",
        "invalid-choice",
        "aws-unreachable",
        "secret-not-found",
        "no-region",
    ],
)
def test_each_mistake_is_one_line_naming_what_to_fix(
    deployment: Deployment,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    env: dict[str, str | None],
    expected: str,
) -> None:
    if env.get("TWILIO_SECRET_ARN", "") is None:
        monkeypatch.setenv("TWILIO_ACCOUNT_SID", ACCOUNT_SID)
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    code, _ = deployment.run(*argv)
    assert code == 2
    assert expected in _one_line(capsys)
    assert deployment.published() == []


def test_the_secret_is_read_in_aws_region(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS_REGION alone (no AWS_DEFAULT_REGION, no profile) is enough, as for the other clients."""
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    code, text = deployment.run("poll", "--dry-run")
    assert code == 0, text


def test_a_dry_run_without_a_bus_says_which_bus_and_that_a_run_refuses(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EVENT_BUS_NAME")
    code, text = deployment.run("poll", "--dry-run")
    assert code == 0, text
    assert "would be published to bus 'default' (EVENT_BUS_NAME is not set: a real run refuses)" in text

    monkeypatch.setenv("EVENT_BUS_NAME", "default")  # said explicitly: allowed
    code, text = deployment.run("poll")
    assert code == 0, text
    assert "published 0 event(s) to bus 'default'" in text


def test_an_unreachable_comms_api_names_its_host_and_the_cause(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COMMS_API_BASE_URL", "http://127.0.0.1:9/v1")
    code, text = deployment.run("poll", "--dry-run", "--time-budget", "30")
    assert code == 1
    assert "Comms API list_operations at 127.0.0.1:9 failed (connection refused) after 3 attempts" in text
