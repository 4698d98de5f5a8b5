"""``comms-bridge --account``: a stack watching two accounts (one simulator serving both, one secret each in
TwilioSecretArns), each command about the account it names; without one it names the watched accounts."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from comms_bridge_tools.cli import main
from comms_bridge_tools.local_stack import LocalStack
from comms_bridge_tools.moto_server import MotoServer
from comms_sim import STORY_START, ManualClock, SimulatorServer, load_accounts, scenarios_dir

pytestmark = pytest.mark.integration

ACME, GLOBEX = "AC" + "0a" * 16, "AC" + "0b" * 16


def _run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


@pytest.fixture
def two_accounts(
    aws_env: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[SimulatorServer, LocalStack]]:
    accounts = load_accounts(scenarios_dir() / "two-accounts.yaml")
    clock = ManualClock(STORY_START)
    with SimulatorServer(accounts=accounts, clock=clock) as sim:
        stack = LocalStack.provision(
            boto3.session.Session(),
            prefix=f"cli-acc-{uuid.uuid4().hex[:8]}",
            parameters={"CommsApiBaseUrl": sim.base_url, "TwilioSecretArn": ""},
            twilio_secrets=[{"accountSid": a.sid, "authToken": a.auth_token} for a in accounts],
        )
        for name, value in stack.function_environment("PollerFunction").items():
            monkeypatch.setenv(name, value)
        yield sim, stack


def _json(*argv: str) -> Any:
    code, text = _run(*argv, "--json")
    assert code == 0, text
    return json.loads(text)


def test_each_account_has_its_own_runs_and_checkpoint(
    two_accounts: tuple[SimulatorServer, LocalStack],
) -> None:
    sim, _ = two_accounts
    first = _json("poll", "--account", ACME)
    assert first["summary"]["accountSid"] == ACME and first["summary"]["status"] == "complete"
    assert sim.account_counters(ACME)["total"] > 0 and not sim.account_counters(GLOBEX)
    assert _json("checkpoint", "show", "--account", GLOBEX) is None  # globex has not run yet
    assert _json("checkpoint", "show", "--account", ACME)["bootstrapped"] is True
    sim.advance(8 * 60)
    second = _json("poll", "--account", GLOBEX)
    assert second["summary"]["accountSid"] == GLOBEX
    tracked = {op["operation_id"] for op in _json("operations", "list", "--account", GLOBEX)}
    globex_ids = {op.id for op in sim.account(GLOBEX).scenario.operations}
    assert tracked and tracked <= globex_ids
    dry = _json("poll", "--dry-run", "--account", ACME)
    assert {event["detail"]["accountSid"] for event in dry["events"]} <= {ACME}
    code, text = _run("checkpoint", "show", "--account", ACME)
    assert code == 0 and f"checkpoint of {ACME}" in text


def test_without_an_account_the_command_names_the_watched_ones(
    two_accounts: tuple[SimulatorServer, LocalStack], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = _run("checkpoint", "show")
    assert code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "watches 2 Twilio accounts: pass --account" in error and ACME in error and GLOBEX in error


def test_an_unwatched_or_malformed_account_is_one_line(
    two_accounts: tuple[SimulatorServer, LocalStack], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = _run("operations", "list", "--account", "AC" + "9" * 32)
    assert code == 2
    assert "is not an account this stack watches" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        _run("poll", "--account", "acme")
    assert exited.value.code == 2
    assert "is not an Account SID" in capsys.readouterr().err
