"""Many accounts without AWS (issue 16): the watched set, one client per secret (refusals, the bounded
cache, the account map read once), stream routing by the CloudEvent's account, the alerter's Slack map and
the account on SNS alerts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from comms_bridge.accounts import AccountClients, UnwatchedSecret
from comms_bridge.comms.client import CommsClient
from comms_bridge.comms.credentials import CommsCredentials
from comms_bridge.comms.models import STAT_FIELDS
from comms_bridge.enricher.adapters import SnsAlert
from comms_bridge.enricher.runtime import EnricherRuntime
from comms_bridge.enricher.settings import parse_slack_map
from comms_bridge.settings import Settings, SettingsError
from comms_bridge.stream.records import OperationEvent, SinkTestEvent, Skipped, SkipReason, parse_record
from comms_bridge.stream.runtime import route
from comms_bridge_tools.kinesis_events import cloud_event, sink_test_event
from tests.support.enricher_fakes import Counter
from tests.support.error_summaries import make_summary

ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:comms/{}-AbCdEf"
A, B, C = (ARN.format(name) for name in "abc")
SID = {A: "AC" + "a" * 32, B: "AC" + "b" * 32, C: "AC" + "c" * 32}
OP = "comms_operation_" + "0" * 26
PROCESSING = "com.twilio.comms-api.operation.processing"


class FakeSecrets:
    """A Powertools SecretsProvider stand-in: each secret's JSON by ARN, every read recorded."""

    def __init__(self, broken: frozenset[str] = frozenset()) -> None:
        self.reads: list[str] = []
        self.broken = broken

    def get(
        self, name: str, max_age: Any = None, transform: Any = None, force_fetch: bool = False, **_: Any
    ) -> Any:
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError  # noqa: PLC0415

        self.reads.append(name)
        if name in self.broken:
            raise GetParameterError("AccessDeniedException")
        return {"accountSid": SID[name], "authToken": "token-" + name[-8:]}


def clients(
    environ: dict[str, str], secrets: FakeSecrets | None = None, max_clients: int = 64
) -> tuple[AccountClients, FakeSecrets]:
    fake = secrets or FakeSecrets()

    def build(credentials: CommsCredentials, refresh: Any) -> CommsClient:
        return CommsClient("http://127.0.0.1:9/v1", credentials, refresh_credentials=refresh)

    return AccountClients(
        Settings.from_env(environ), build, secrets_provider=fake, max_clients=max_clients
    ), fake


def test_the_watched_set_is_the_single_secret_then_the_list_without_blanks_or_repeats() -> None:
    settings = Settings.from_env({"TWILIO_SECRET_ARN": A, "TWILIO_SECRET_ARNS": f" {B},,{A}, {C} "})
    assert settings.watched_secret_arns == (A, B, C)
    assert Settings.from_env({"TWILIO_SECRET_ARN": "", "TWILIO_SECRET_ARNS": B}).watched_secret_arns == (B,)
    assert Settings.from_env({}).watched_secret_arns == ()


PREFIX = "arn:aws:secretsmanager:us-east-1:123456789012:secret:comms/twilio/"


def test_named_secrets_join_the_watched_set_as_the_prefix_plus_each_name() -> None:
    settings = Settings.from_env(
        {
            "TWILIO_SECRET_ARN": A,
            "TWILIO_SECRET_ARN_PREFIX": PREFIX,
            "TWILIO_SECRET_NAMES": " acme,,globex,acme ",
        }
    )
    assert settings.watched_secret_arns == (A, PREFIX + "acme", PREFIX + "globex")
    # The template leaves the prefix empty when no names are listed.
    assert Settings.from_env({"TWILIO_SECRET_ARN": A, "TWILIO_SECRET_NAMES": ""}).watched_secret_arns == (A,)


def test_a_named_secret_given_by_its_full_arn_is_the_watched_one() -> None:
    named = {"TWILIO_SECRET_ARN_PREFIX": PREFIX, "TWILIO_SECRET_NAMES": "acme,globex"}
    accounts, _ = clients(named)
    assert accounts.secret_key(PREFIX + "acme-AbC123") == PREFIX + "acme"
    assert accounts.secret_key(PREFIX + "globex") == PREFIX + "globex"
    for unwatched in (PREFIX + "initech-AbC123", PREFIX + "acme-AbC12", PREFIX + "acme-europe-AbC123"):
        with pytest.raises(UnwatchedSecret):
            accounts.secret_key(unwatched)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"TWILIO_SECRET_NAMES": "acme"}, "TWILIO_SECRET_NAMES: needs TWILIO_SECRET_ARN_PREFIX"),
        (
            {"TWILIO_SECRET_ARN_PREFIX": "comms/twilio/", "TWILIO_SECRET_NAMES": "acme"},
            "TWILIO_SECRET_ARN_PREFIX: must be a secret ARN up to the start of the names",
        ),
    ],
)
def test_names_without_a_usable_prefix_are_a_settings_error(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(environ)


def test_each_secret_gets_its_own_client_kept_across_runs() -> None:
    accounts, secrets = clients({"TWILIO_SECRET_ARNS": f"{A},{B}"})
    a, b = accounts.for_secret(A), accounts.for_secret(B)
    assert (a.account_sid, b.account_sid) == (SID[A], SID[B])
    assert accounts.for_secret(A) is a and accounts.for_secret(B) is b
    assert secrets.reads == [A, B], "each secret read once per container (Powertools caches the rest)"


def test_a_secret_not_watched_is_refused_before_anything_is_read() -> None:
    accounts, secrets = clients({"TWILIO_SECRET_ARN": A, "TWILIO_SECRET_ARNS": B})
    with pytest.raises(UnwatchedSecret, match=r"comms/c-AbCdEf is not one of the 2 secret\(s\)"):
        accounts.for_secret(C)
    assert secrets.reads == []


def test_without_a_named_secret_only_a_single_watched_one_is_used() -> None:
    single, _ = clients({"TWILIO_SECRET_ARNS": B})
    assert single.for_secret(None).account_sid == SID[B]
    several, secrets = clients({"TWILIO_SECRET_ARN": A, "TWILIO_SECRET_ARNS": B})
    with pytest.raises(SettingsError, match="2 Twilio secrets are watched"):
        several.for_secret(None)
    assert secrets.reads == []


def test_the_cache_is_bounded_and_closes_what_it_drops() -> None:
    accounts, secrets = clients({"TWILIO_SECRET_ARNS": f"{A},{B}"}, max_clients=1)
    first = accounts.for_secret(A)
    accounts.for_secret(B)
    assert accounts.for_secret(A) is not first
    assert secrets.reads == [A, B, A]


def test_the_account_map_reads_each_secret_once_and_survives_a_broken_one() -> None:
    accounts, secrets = clients({"TWILIO_SECRET_ARNS": f"{A},{B},{C}"}, FakeSecrets(frozenset({B})))
    assert accounts.account_secrets() == {SID[A]: A, SID[C]: C}
    assert accounts.for_account(SID[B]) is None and accounts.for_account(SID[C]) is not None
    secrets.broken = frozenset()
    assert accounts.account_secrets() == {SID[A]: A, SID[B]: B, SID[C]: C}, "read again: B's secret is back"
    reads = len(secrets.reads)
    accounts.account_secrets()
    assert len(secrets.reads) == reads, "complete: not read again"


# -- the stream: which account a record belongs to ---------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "envelope", "account"),
    [
        ({"operation_id": OP, "account_sid": SID[A]}, {}, SID[A]),
        ({"operation_id": OP, "accountSid": SID[B]}, {}, SID[B]),
        ({"operation_id": OP}, {"id": SID[C]}, SID[C]),
        ({"operation_id": OP}, {"source": f"/v1/Accounts/{SID[A]}/Emails/Operations"}, SID[A]),
        ({"operation_id": OP}, {}, None),
        ({"operation_id": OP, "account_sid": "AC12"}, {"id": "EV1"}, None),
    ],
)
def test_a_record_names_its_account_in_data_then_id_then_source(
    data: dict[str, str], envelope: dict[str, str], account: str | None
) -> None:
    raw = json.loads(cloud_event(PROCESSING, data, time="t", event_id="EV1", data_as_string=True))
    raw.update(envelope)
    record = parse_record("1", json.dumps(raw).encode())
    assert isinstance(record, OperationEvent) and record.account_sid == account


def test_the_sink_test_event_belongs_to_the_account_in_its_id() -> None:
    record = parse_record("1", sink_test_event("95001c1e", account_sid=SID[B], time="t"))
    assert isinstance(record, SinkTestEvent) and record.account_sid == SID[B]


def test_records_are_routed_by_account_and_the_rest_skipped_with_a_reason() -> None:
    records = [
        OperationEvent("1", PROCESSING, OP, None, SID[A]),
        OperationEvent("2", PROCESSING, OP, None, SID[B]),
        OperationEvent("3", PROCESSING, OP, None, SID[C]),
        OperationEvent("4", PROCESSING, OP, None, None),
        SinkTestEvent("5", "t1", None, SID[A]),
        Skipped("6", SkipReason.UNDECODABLE, None, "x"),
    ]
    routed, unrouted = route(records, {SID[A]: A, SID[B]: B})
    assert {account: [r.sequence for r in rs] for account, rs in routed.items()} == {
        SID[A]: ["1", "5"],
        SID[B]: ["2"],
    }
    assert [(s.sequence, s.reason) for s in unrouted] == [
        ("3", SkipReason.UNWATCHED_ACCOUNT),
        ("4", SkipReason.NO_ACCOUNT),
        ("6", SkipReason.UNDECODABLE),
    ]
    # One watched account: a record naming none is that account's.
    routed, unrouted = route(records[3:4], {SID[A]: A})
    assert list(routed) == [SID[A]] and not unrouted
    assert SkipReason.UNWATCHED_ACCOUNT.metric == "StreamSkippedUnwatchedAccount"


# -- the alerter -------------------------------------------------------------------------------------------

SLACK_A = "arn:aws:secretsmanager:us-east-1:123456789012:secret:slack/a-AbCdEf"
SLACK_DEFAULT = "arn:aws:secretsmanager:us-east-1:123456789012:secret:slack/default-AbCdEf"
ENV = {"IDEMPOTENCY_TABLE_NAME": "t"}


def test_the_slack_map_routes_an_account_to_its_webhook_and_the_rest_to_the_default() -> None:
    runtime = EnricherRuntime.from_env(
        Counter(),
        environ={
            **ENV,
            "SLACK_WEBHOOK_SECRET_ARN": SLACK_DEFAULT,
            "SLACK_WEBHOOK_SECRET_ARNS_BY_ACCOUNT": f"{SID[A]}={SLACK_A}",
        },
    )
    ports = runtime.ports
    assert ports.slack_secret_for(SID[A]) == SLACK_A  # type: ignore[attr-defined]
    assert ports.slack_secret_for(SID[B]) == SLACK_DEFAULT  # type: ignore[attr-defined]
    assert [t.name for t in ports.alert_targets(lambda: 10.0, SID[B])] == ["slack"]
    mapped_only = EnricherRuntime.from_env(
        Counter(), environ={**ENV, "SLACK_WEBHOOK_SECRET_ARNS_BY_ACCOUNT": f"{SID[A]}={SLACK_A}"}
    )
    assert [t.name for t in mapped_only.ports.alert_targets(lambda: 10.0, SID[A])] == ["slack"]
    assert mapped_only.ports.alert_targets(lambda: 10.0, SID[B]) == []


@pytest.mark.parametrize(
    "value", [SLACK_A, f"{SID[A]}=", f"AC12={SLACK_A}", f"{SID[A]}={SLACK_A},{SID[A]}={SLACK_A}"]
)
def test_a_bad_slack_map_is_refused_naming_the_variable_not_the_value(value: str) -> None:
    with pytest.raises(SettingsError, match="SLACK_WEBHOOK_SECRET_ARNS_BY_ACCOUNT") as caught:
        EnricherRuntime.from_env(Counter(), environ={**ENV, "SLACK_WEBHOOK_SECRET_ARNS_BY_ACCOUNT": value})
    assert SLACK_A not in str(caught.value)
    assert parse_slack_map(f" {SID[A]}={SLACK_A} , {SID[B]}={SLACK_A}") == {SID[A]: SLACK_A, SID[B]: SLACK_A}


class RecordingSns:
    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []

    def publish(self, **kwargs: Any) -> dict[str, str]:
        self.published.append(kwargs)
        return {"MessageId": "m"}


def test_sns_alerts_carry_the_account_as_a_message_attribute() -> None:
    sns = RecordingSns()
    alert = make_summary(
        [], stats={**dict.fromkeys(STAT_FIELDS, 0), "total": 100, "failed": 20}, account_sid=SID[B]
    )
    SnsAlert(sns, "arn:aws:sns:us-east-1:123456789012:t").send(alert)  # type: ignore[arg-type]
    (published,) = sns.published
    assert published["MessageAttributes"] == {"accountSid": {"DataType": "String", "StringValue": SID[B]}}
