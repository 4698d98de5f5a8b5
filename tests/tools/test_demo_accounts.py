"""The demo and the local stack with several Twilio accounts: ``make demo ARGS="--accounts 2"`` end to end
(two customers with different stories, one secret and one schedule each, nothing crossing between them),
and the pieces it is made of."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
import pytest

from comms_bridge_tools import demo_accounts, local_stack, local_up
from comms_bridge_tools.demo import (
    STOREFRONT_EXPECTATIONS,
    STORY_EXPECTATIONS,
    DemoInputError,
    load_accounts,
)
from comms_bridge_tools.moto_server import MotoServer
from comms_sim import Scenario
from comms_sim import load_accounts as load_accounts_file
from tests.support.schemas import detail_errors

REPO = Path(__file__).resolve().parents[2]
TWO_ACCOUNTS = REPO / "scenarios" / "two-accounts.yaml"
ACME, GLOBEX = "AC" + "0a" * 16, "AC" + "0b" * 16

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def two_accounts() -> dict[str, Any]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_ENDPOINT")}
    env["NO_COLOR"] = "1"
    completed = subprocess.run(
        [sys.executable, "-m", "comms_bridge_tools.demo", "--fast", "--json", "--accounts", "2"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
        check=False,
    )
    assert completed.stdout, completed.stderr[-3000:]
    summary: dict[str, Any] = json.loads(completed.stdout)
    summary["returncode"] = completed.returncode
    summary["timeline"] = completed.stderr
    return summary


def test_two_accounts_with_different_stories_run_clean(two_accounts: dict[str, Any]) -> None:
    assert two_accounts["returncode"] == 0, two_accounts["problems"]
    assert two_accounts["ok"] and not two_accounts["problems"]
    assert two_accounts["scenario"] == "story + storefront"
    names = {op["name"] for op in two_accounts["operations"]}
    assert names == {f"acme/{n}" for n in STORY_EXPECTATIONS} | {
        f"globex/{n}" for n in STOREFRONT_EXPECTATIONS
    }
    # One poller invocation per account's schedule per tick.
    assert two_accounts["invocations"]["PollerFunction"] == 2 * two_accounts["polls"]
    assert "account     acme AC0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a: story 'story'" in two_accounts["timeline"]
    assert "globex/flash-sale" in two_accounts["timeline"]


def test_every_event_carries_its_operations_account(two_accounts: dict[str, Any]) -> None:
    account_of = {
        op["operationId"]: ACME if op["name"].startswith("acme/") else GLOBEX
        for op in two_accounts["operations"]
    }
    by_account: Counter[str] = Counter()
    for event in two_accounts["events"]:
        assert event["detail"]["accountSid"] == account_of[event["operationId"]], event
        assert not detail_errors(event["detailType"], event["detail"])
        by_account[event["detail"]["accountSid"]] += 1
    assert by_account[ACME] and by_account[GLOBEX]
    keys = [event["eventKey"] for event in two_accounts["events"]]
    assert len(keys) == len(set(keys))


def test_each_account_is_alerted_for_its_own_failures(two_accounts: dict[str, Any]) -> None:
    alerts = {(a["channel"], a["operationId"]): a for a in two_accounts["alerts"]}
    ops = {op["name"]: op["operationId"] for op in two_accounts["operations"]}
    flash, failing = ops["globex/flash-sale"], ops["acme/high-failure"]
    assert f"Account    {GLOBEX}" in alerts[("sns", flash)]["body"]
    assert f"Account    {ACME}" in alerts[("sns", failing)]["body"]
    assert ("slack", flash) in alerts and ("slack", failing) in alerts


# -- the pieces ---------------------------------------------------------------------------------------


def test_accounts_for_the_demo() -> None:
    story = Scenario.story()
    two = demo_accounts.demo_accounts(2, story, default_story=True)
    assert [(a.name, a.scenario.name) for a in two] == [("acme", "story"), ("globex", "storefront")]
    three = demo_accounts.demo_accounts(3, story, default_story=True)
    assert three[2].scenario.name == "story" and three[2].sid not in {ACME, GLOBEX}
    assert not {op.id for op in three[2].scenario.operations} & {op.id for op in story.operations}
    other = demo_accounts.demo_accounts(2, Scenario.from_dict({"operations": []}), default_story=False)
    assert len({a.sid for a in other}) == 2
    with pytest.raises(demo_accounts.AccountsInputError, match="at least 1"):
        demo_accounts.demo_accounts(0, story, default_story=True)


def test_expectations_and_crossing_are_per_account() -> None:
    accounts = load_accounts_file(TWO_ACCOUNTS)
    expected = demo_accounts.expectations(accounts, {
        demo_accounts.STORY.resolve(): STORY_EXPECTATIONS,
        demo_accounts.STOREFRONT.resolve(): STOREFRONT_EXPECTATIONS,
    })  # fmt: skip
    assert expected["acme/high-failure"] is STORY_EXPECTATIONS["high-failure"]
    assert expected["globex/flash-sale"] is STOREFRONT_EXPECTATIONS["flash-sale"]
    owners = demo_accounts.operations(accounts)
    flash = next(op.id for op in accounts[1].scenario.operations if op.name == "flash-sale")
    assert demo_accounts.crossed({"operationId": flash, "accountSid": GLOBEX}, owners) is None
    assert "not AC0b0b" in str(demo_accounts.crossed({"operationId": flash, "accountSid": ACME}, owners))
    assert demo_accounts.secrets(accounts)[0] == {"accountSid": ACME, "authToken": accounts[0].auth_token}


def test_the_demo_refuses_a_count_that_does_not_fit_the_file() -> None:
    with pytest.raises(DemoInputError, match="names 2 accounts: leave out --accounts 3"):
        load_accounts(TWO_ACCOUNTS, 3)
    assert load_accounts(REPO / "scenarios" / "story.yaml", None) is None
    assert [a.name for a in load_accounts(TWO_ACCOUNTS, None) or []] == ["acme", "globex"]


def test_one_schedule_per_account_as_deployed(aws_env: MotoServer) -> None:
    accounts = load_accounts_file(TWO_ACCOUNTS)
    stack = local_up.provision(
        boto3.session.Session(),
        prefix=f"acc-{uuid.uuid4().hex[:6]}",
        api_base_url="http://127.0.0.1:9/v1",
        accounts=demo_accounts.secrets(accounts),
    )
    arns = local_stack.twilio_secret_arns(stack)
    schedules = local_stack.schedules(stack)
    assert len(arns) == 2
    assert [s.function for s in schedules] == ["PollerFunction", "PollerFunction"]
    assert [s.payload for s in schedules] == [{"twilioSecretArn": arn} for arn in arns]
    assert stack.function_environment("PollerFunction")["TWILIO_SECRET_ARNS"] == ",".join(arns)
    stored = [
        json.loads(stack.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"])[
            "accountSid"
        ]
        for arn in arns
    ]
    assert stored == [ACME, GLOBEX]
    lines = local_up.export_lines(aws_env.env(), stack, api_base_url="http://127.0.0.1:9/v1")
    assert f"export TWILIO_SECRET_ARNS={','.join(arns)}" in lines
    assert not any(line.startswith("export TWILIO_SECRET_ARN=") for line in lines)


def test_one_account_keeps_its_single_schedule(aws_env: MotoServer) -> None:
    stack = local_up.provision(
        boto3.session.Session(), prefix=f"one-{uuid.uuid4().hex[:6]}", api_base_url="http://127.0.0.1:9/v1"
    )
    (schedule,) = local_stack.schedules(stack)
    assert schedule.payload == {"twilioSecretArn": stack.parameters["TwilioSecretArn"]}
    lines = local_up.export_lines(aws_env.env(), stack, api_base_url="http://127.0.0.1:9/v1")
    assert f"export TWILIO_SECRET_ARN={stack.parameters['TwilioSecretArn']}" in lines
