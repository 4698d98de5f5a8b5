"""Many accounts on one stack (issue 16), against moto server and one Comms API simulator per account.

The stack is provisioned from template.yaml with two watched secrets (``TwilioSecretArns``), so each run
below is started with the input its account's schedule holds in moto. One runtime (one container) serves
both accounts in turn; its Comms clients reach each account's simulator (the simulators answer one account
each, so the client builder picks the simulator by the credentials' account: the only thing wired here).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from comms_bridge.accounts import AccountClients, UnwatchedSecret
from comms_bridge.aws.clients import AwsClients
from comms_bridge.comms.client import CommsClient
from comms_bridge.comms.credentials import CommsCredentials
from comms_bridge.poller.config import PollerConfig
from comms_bridge.poller.lease import DynamoLease
from comms_bridge.poller.runtime import PollerRuntime
from comms_bridge.stream.runtime import StreamRuntime
from comms_bridge_tools.kinesis_events import cloud_event
from comms_bridge_tools.local_stack import LocalStack
from comms_bridge_tools.moto_server import MotoServer
from comms_sim import FaultRule, ManualClock, Scenario, SimulatorServer
from comms_sim.pytest_plugin import STORY_START
from tests.support.poller_harness import FakeContext, load_poller_module, new_simulator

pytestmark = pytest.mark.integration
STEP = 5 * 60


@dataclass
class TwoAccounts:
    stack: LocalStack
    a: SimulatorServer
    b: SimulatorServer
    runtime: PollerRuntime
    secret: dict[str, str]  # account SID -> its secret's ARN (as its schedule's input names it)
    captured: list[dict[str, Any]] = field(default_factory=list)

    def run(self, sim: SimulatorServer, metrics: Any = None) -> dict[str, Any]:
        return self.runtime.run(FakeContext(), secret_arn=self.secret[sim.account_sid], metrics=metrics)

    def events(self, sim: SimulatorServer) -> list[dict[str, Any]]:
        return [e for e in self.captured if e["detail"].get("accountSid") == sim.account_sid]

    def drain(self) -> None:
        self.captured.extend(self.stack.drain(self.stack.capture_queue_url, 0.5))

    def state(self, sim: SimulatorServer) -> dict[str, tuple[str, str]]:
        """operationId -> (status, updatedAt) as stored for the account."""
        items = self.stack.client("dynamodb").scan(TableName=self.stack.state_table_name)["Items"]
        prefix = f"OP#{sim.account_sid}#"
        return {
            i["pk"]["S"].removeprefix(prefix): (i["status"]["S"], i["updatedAt"]["S"])
            for i in items
            if i["pk"]["S"].startswith(prefix)
        }

    def caught_up(self, sim: SimulatorServer) -> bool:
        """Every operation the API shows is stored as the API shows it (one past its retention may still be
        stored until its departure is noticed)."""
        stored = self.state(sim)
        return all(stored.get(op["id"]) == (op["status"], op["updatedAt"]) for op in sim.operations())


@pytest.fixture
def two(
    moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[TwoAccounts]:
    """Two accounts listed by ARN (``TwilioSecretArns``), or with ``indirect`` param "names" by name
    under a prefix (``TwilioSecretNames``: the schedules pass ARNs without the random suffix)."""
    for key, value in moto_server.env().items():
        monkeypatch.setenv(key, value)
    with (
        new_simulator(Scenario.story(), ManualClock(STORY_START)) as a,
        new_simulator(Scenario.story(), ManualClock(STORY_START)) as b,
    ):
        sims = {a.account_sid: a, b.account_sid: b}
        stack = LocalStack.provision(
            moto_server.env(),
            parameters={"TwilioSecretArn": ""},
            twilio_secrets=[{"accountSid": s.account_sid, "authToken": s.auth_token} for s in (a, b)],
            name_accounts=getattr(request, "param", "arns") == "names",
        )
        env = {**stack.function_environment("PollerFunction"), "COMMS_API_BASE_URL": a.base_url}
        config = PollerConfig.from_env(env)

        def build(credentials: CommsCredentials, refresh: Any) -> CommsClient:
            return CommsClient(
                sims[credentials.account_sid].base_url,
                credentials,
                max_clock_skew=config.max_clock_skew_seconds,
                refresh_credentials=refresh,
            )

        aws = AwsClients()
        runtime = PollerRuntime(config, AccountClients(config, build), aws.dynamodb(), aws.events())
        inputs = [i["twilioSecretArn"] for i in stack.schedule_inputs().values()]
        secret = {runtime.comms(arn).account_sid: arn for arn in inputs}
        assert set(secret) == set(sims), "one schedule per account, each naming its secret"
        stack.drain(stack.capture_queue_url, 0)
        yield TwoAccounts(stack=stack, a=a, b=b, runtime=runtime, secret=secret)


class Recorder:
    def __init__(self) -> None:
        self.added: list[tuple[str, float]] = []

    def add(self, name: str, unit: str, value: float) -> None:
        self.added.append((name, value))


def advance(two: TwoAccounts, seconds: float = STEP) -> None:
    two.a.advance(seconds)
    two.b.advance(seconds)


def bootstrap(two: TwoAccounts) -> None:
    for sim in (two.a, two.b):
        summary = two.run(sim)
        assert summary["status"] == "complete" and summary["bootstrapped"]
        assert summary["accountSid"] == sim.account_sid
    two.drain()


# -- partitioning -----------------------------------------------------------------------------------------


def test_each_accounts_state_checkpoint_and_lease_are_its_own(two: TwoAccounts) -> None:
    bootstrap(two)
    items = two.stack.client("dynamodb").scan(TableName=two.stack.state_table_name)["Items"]
    for sim in (two.a, two.b):
        assert any(i["pk"]["S"] == f"CHECKPOINT#{sim.account_sid}" for i in items)
        assert two.caught_up(sim)
    assert all(two.a.account_sid in i["pk"]["S"] or two.b.account_sid in i["pk"]["S"] for i in items)
    # A crashed run of A still holds A's lease: A's next run waits it out, B's runs as if nothing happened.
    DynamoLease(
        two.runtime.dynamodb, table_name=two.stack.state_table_name, account_sid=two.a.account_sid
    ).acquire(two.a.now(), 900)
    advance(two)
    assert two.run(two.a)["status"] == "contended"
    assert two.run(two.b)["status"] == "complete"
    two.drain()
    assert two.caught_up(two.b) and not two.caught_up(two.a)
    assert two.events(two.b) and not two.events(two.a)


# -- isolation ---------------------------------------------------------------------------------------------


def test_one_accounts_401_429_storm_and_bad_data_leave_the_other_untouched(two: TwoAccounts) -> None:
    bootstrap(two)
    a_before = two.state(two.a)
    # A's credential is revoked: every request of A answers 401, and its run fails (the error alarm).
    token = two.a.auth_token
    two.a.rotate_credential("revoked-" + token)
    advance(two)
    with pytest.raises(Exception, match=r"401|nauthori"):
        two.run(two.a)
    assert two.run(two.b)["status"] == "complete"
    # A's API throttles everything and asks for more than a run can wait: A's run fails fast.
    two.a.rotate_credential(token)
    storm = two.a.faults.add(FaultRule(kind="429", retry_after="120"))
    advance(two)
    metrics = Recorder()
    assert two.run(two.a, metrics)["status"] == "failed"
    # Still A's lag, from its stored checkpoint: the lag alarm (the worst account) keeps seeing A.
    (lag,) = [value for name, value in metrics.added if name == "CheckpointLagSeconds"]
    assert lag >= STEP
    assert two.run(two.b)["status"] == "complete"
    # A's API sends malformed operations: A skips them, B never sees them.
    two.a.faults.remove(storm)
    bad = two.a.faults.add(FaultRule(kind="bad_items", endpoint="list_operations", items=1))
    advance(two)
    two.run(two.a)
    b_summary = two.run(two.b)
    assert b_summary["status"] == "complete" and b_summary["skipped_malformed"] == 0
    two.drain()
    assert two.caught_up(two.b), "B published and stored every change, every period"
    keys = [e["detail"]["eventKey"] for e in two.events(two.b)]
    assert keys and len(keys) == len(set(keys))
    # A recovers on its own once its API does, without duplicates.
    two.a.faults.remove(bad)
    assert two.run(two.a)["status"] == "complete"
    two.drain()
    assert two.caught_up(two.a) and two.state(two.a) != a_before
    keys = [e["detail"]["eventKey"] for e in two.events(two.a)]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("two", ["arns", "names"], indirect=True)
def test_a_secret_the_stack_does_not_watch_is_refused_before_any_request(
    two: TwoAccounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**two.stack.function_environment("PollerFunction"), "COMMS_API_BASE_URL": two.a.base_url}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    other = two.stack.create_secret("other", json.dumps({"accountSid": "AC" + "f" * 32, "authToken": "t"}))
    module = load_poller_module()
    with pytest.raises(UnwatchedSecret, match="not one of the 2 secret"):
        module.lambda_handler({"twilioSecretArn": other}, FakeContext())
    # Under the names' prefix (readable by the role) but not listed: still not watched.
    unlisted = two.stack.create_secret(
        "accounts/twilio-9", json.dumps({"accountSid": "AC" + "f" * 32, "authToken": "t"})
    )
    with pytest.raises(UnwatchedSecret, match="not one of the 2 secret"):
        module.lambda_handler({"twilioSecretArn": unlisted}, FakeContext())
    assert not two.a.request_log and not two.b.request_log


# -- routing: the push path --------------------------------------------------------------------------------


def kinesis_event(datas: list[bytes]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "eventSource": "aws:kinesis",
                "eventID": f"shardId-000000000000:{n}",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/s",
                "kinesis": {
                    "sequenceNumber": str(n),
                    "partitionKey": "k",
                    "data": base64.b64encode(data).decode(),
                    "approximateArrivalTimestamp": 0,
                },
            }
            for n, data in enumerate(datas, start=1)
        ]
    }


@pytest.mark.parametrize("two", ["arns", "names"], indirect=True)
def test_stream_records_are_fetched_with_their_accounts_client_and_unwatched_ones_skipped(
    two: TwoAccounts,
) -> None:
    bootstrap(two)
    advance(two)
    stream = StreamRuntime(two.runtime)
    op_a, op_b = two.a.operations()[0]["id"], two.b.operations()[0]["id"]
    kind = "com.twilio.comms-api.operation.processing"
    now = datetime.now().isoformat()
    datas = [
        cloud_event(
            kind,
            {"operation_id": op_a, "account_sid": two.a.account_sid},
            time=now,
            event_id="e1",
            data_as_string=True,
        ),
        cloud_event(kind, {"operation_id": op_b}, time=now, event_id="e2", data_as_string=False).replace(
            b'"/v1/Emails/Operations"', f'"/v1/Accounts/{two.b.account_sid}/Emails"'.encode()
        ),
        cloud_event(
            kind,
            {"operation_id": op_a, "accountSid": "AC" + "e" * 32},
            time=now,
            event_id="e3",
            data_as_string=False,
        ),
        cloud_event(kind, {"operation_id": op_b}, time=now, event_id="e4", data_as_string=False),
    ]
    two.a.reset_log()
    two.b.reset_log()
    response, outcome = stream.handle(kinesis_event(datas), FakeContext())
    assert response == {"batchItemFailures": []}
    assert {str(reason): n for reason, n in outcome.skipped.items()} == {
        "unwatched-account": 1,
        "no-account": 1,
    }
    assert [r.path for r in two.a.request_log] == [f"/v1/Emails/Operations/{op_a}"]
    assert [r.path for r in two.b.request_log] == [f"/v1/Emails/Operations/{op_b}"]
    # A's credential revoked: A's record is skipped (a retry cannot help, and it would hold B's records
    # behind it in the shard); B's goes through.
    two.a.rotate_credential("revoked-" + two.a.auth_token)
    two.b.reset_log()
    response, outcome = stream.handle(kinesis_event(datas[:2]), FakeContext())
    assert response == {"batchItemFailures": []}
    assert {str(reason): n for reason, n in outcome.skipped.items()} == {"unauthorized": 1}
    assert [r.path for r in two.b.request_log] == [f"/v1/Emails/Operations/{op_b}"]
