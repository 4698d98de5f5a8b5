"""Many accounts in the template (issue 16): one schedule per watched secret in the stack's own schedule
group (``Fn::ForEach`` over ``TwilioSecretArns``, expanded the way ``AWS::LanguageExtensions`` expands it,
then the SAM transform), every function reading every watched secret, the per-account Slack map, the
dashboard's per-account views and the lag alarm on the worst account."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from comms_bridge_tools.local_stack import Resolver, expand_for_each, load_template, parameter_defaults
from tests.product.unit.test_template import (
    EVENT_STREAMS,
    SLACK_SECRET,
    _Placeholders,
    _resources,
    _sam_transform,
    _statements,
)

ROOT = Path(__file__).resolve().parents[3]
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:comms/{}-AbCdEf"
ACME, GLOBEX, INITECH = (SECRET.format(name) for name in ("acme", "globex", "initech"))
ACCOUNT_A = "AC" + "a" * 32
ACCOUNT_B = "AC" + "b" * 32
SLACK_A = "arn:aws:secretsmanager:us-east-1:123456789012:secret:slack/acme-AbCdEf"


def deployed(**overrides: str) -> tuple[dict[str, Any], Resolver]:
    parameters = {**parameter_defaults(load_template()), **EVENT_STREAMS, **overrides}
    output = _sam_transform(parameters)
    return output, Resolver(template=output, parameters=parameters, resource_names=_Placeholders())


def schedules(output: dict[str, Any], resolver: Resolver) -> dict[str, dict[str, Any]]:
    return _resources(output, resolver, "AWS::Scheduler::Schedule")


def test_one_schedule_per_watched_secret_in_the_stacks_group() -> None:
    output, resolver = deployed(TwilioSecretArn=ACME, TwilioSecretArns=f"{GLOBEX},{INITECH}")
    found = schedules(output, resolver)
    assert {json.loads(s["Target"]["Input"])["twilioSecretArn"] for s in found.values()} == {
        ACME,
        GLOBEX,
        INITECH,
    }
    # The single secret keeps the schedule SAM made for it (same logical id); the list's are named after
    # their ARN's letters and digits (what &{} keeps).
    assert set(found) == {
        "PollerFunctionPollerSchedule",
        "PollerSchedule" + re.sub(r"[^A-Za-z0-9]", "", GLOBEX),
        "PollerSchedule" + re.sub(r"[^A-Za-z0-9]", "", INITECH),
    }
    (group,) = _resources(output, resolver, "AWS::Scheduler::ScheduleGroup")
    for schedule in found.values():
        assert schedule["GroupName"] == f"<{group}>"
        assert schedule["ScheduleExpression"] == "rate(1 minute)"
        assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
        target = schedule["Target"]
        assert target["Arn"] == "<PollerFunction.Arn>"
        assert target["RoleArn"] == "<PollerScheduleRole.Arn>"
        assert target["RetryPolicy"] == {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 60}
        assert target["DeadLetterConfig"] == {"Arn": "<PollerDeadLetterQueue.Arn>"}


def test_a_stack_of_listed_accounts_only_has_no_single_account_schedule() -> None:
    output, resolver = deployed(TwilioSecretArn="", TwilioSecretArns=f"{GLOBEX},{INITECH}")
    inputs = [json.loads(s["Target"]["Input"]) for s in schedules(output, resolver).values()]
    assert sorted(i["twilioSecretArn"] for i in inputs) == sorted([GLOBEX, INITECH])


def test_a_single_account_stack_keeps_its_schedule_and_gets_no_loop_schedule() -> None:
    output, resolver = deployed(TwilioSecretArn=ACME)
    found = schedules(output, resolver)
    assert list(found) == ["PollerFunctionPollerSchedule"]
    # Its name is the one SAM gave it, and it now names the account's secret.
    assert "StackName" in json.dumps(
        output["Resources"]["PollerFunctionPollerSchedule"]["Properties"]["Name"]
    )
    assert json.loads(found["PollerFunctionPollerSchedule"]["Target"]["Input"]) == {"twilioSecretArn": ACME}


def test_a_repeated_secret_in_the_list_is_refused_by_the_expansion() -> None:
    template = load_template()
    with pytest.raises(ValueError, match="generated twice"):
        expand_for_each(template, {**parameter_defaults(template), "TwilioSecretArns": f"{GLOBEX},{GLOBEX}"})


def test_the_schedule_role_can_only_invoke_the_poller_and_dead_letter() -> None:
    output, resolver = deployed(TwilioSecretArns=GLOBEX)
    role = _resources(output, resolver, "AWS::IAM::Role")["PollerScheduleRole"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}
    statements = role["Policies"][0]["PolicyDocument"]["Statement"]
    assert {(s["Action"], s["Resource"]) for s in statements} == {
        ("lambda:InvokeFunction", "<PollerFunction.Arn>"),
        ("sqs:SendMessage", "<PollerDeadLetterQueue.Arn>"),
    }


@pytest.mark.parametrize(
    ("single", "listed", "watched"),
    [
        (ACME, "", [ACME]),
        (ACME, f"{GLOBEX},{INITECH}", [ACME, GLOBEX, INITECH]),
        ("", f"{GLOBEX},{INITECH}", [GLOBEX, INITECH]),
    ],
)
def test_every_function_reads_every_watched_secret_and_knows_the_set(
    single: str, listed: str, watched: list[str]
) -> None:
    output, resolver = deployed(TwilioSecretArn=single, TwilioSecretArns=listed)
    readable: dict[str, set[str]] = {}
    for role, statement in _statements(output, resolver):
        if (
            "secretsmanager:GetSecretValue" in json.dumps(statement["Action"])
            and "Condition" not in statement
        ):
            resources = statement["Resource"]
            readable.setdefault(role, set()).update(resources if isinstance(resources, list) else [resources])
    for role in ("PollerRole", "ErrorsRole", "StreamRole"):
        assert set(watched) <= readable[role], role
        assert readable[role] - set(watched) <= {SLACK_SECRET}  # the alerter's default Slack webhook
    functions = _resources(output, resolver, "AWS::Lambda::Function")
    for name in ("PollerFunction", "ErrorsFunction", "StreamFunction"):
        env = functions[name]["Environment"]["Variables"]
        assert env["TWILIO_SECRET_ARN"] == single
        assert env["TWILIO_SECRET_ARNS"] == listed


def test_the_slack_map_reaches_the_alerter_and_only_its_secrets_are_readable() -> None:
    mapping = f"{ACCOUNT_A}={SLACK_A}"
    output, resolver = deployed(SlackWebhookSecretArnsByAccount=mapping)
    env = _resources(output, resolver, "AWS::Lambda::Function")["ErrorsFunction"]["Environment"]["Variables"]
    assert env["SLACK_WEBHOOK_SECRET_ARNS_BY_ACCOUNT"] == mapping
    (statement,) = _conditional_secret_reads(output, resolver)
    assert statement["Condition"] == {"StringEquals": {"secretsmanager:SecretId": [ACCOUNT_A, SLACK_A]}}
    assert not _conditional_secret_reads(*deployed())


def _conditional_secret_reads(output: dict[str, Any], resolver: Resolver) -> list[dict[str, Any]]:
    return [
        s
        for role, s in _statements(output, resolver)
        if role == "ErrorsRole" and s["Action"] == "secretsmanager:GetSecretValue" and "Condition" in s
    ]


def test_the_slack_map_parameter_takes_only_account_to_arn_pairs() -> None:
    pattern = re.compile(load_template()["Parameters"]["SlackWebhookSecretArnsByAccount"]["AllowedPattern"])
    assert pattern.fullmatch("")
    assert pattern.fullmatch(f"{ACCOUNT_A}={SLACK_A}")
    assert pattern.fullmatch(f"{ACCOUNT_A}={SLACK_A},{ACCOUNT_B}={SLACK_A}")
    for bad in (
        SLACK_A,
        f"{ACCOUNT_A}=",
        f"{ACCOUNT_A}={SLACK_A},",
        f"AC12={SLACK_A}",
        f"{ACCOUNT_A}=https://x",
    ):
        assert not pattern.fullmatch(bad), bad


def test_the_lag_alarm_watches_the_worst_account_and_the_dashboard_shows_each() -> None:
    output, resolver = deployed(TwilioSecretArns=f"{GLOBEX},{INITECH}")
    alarm = _resources(output, resolver, "AWS::CloudWatch::Alarm")["CheckpointLagAlarm"]
    (lag,) = [m for m in alarm["Metrics"] if m["Id"] == "lag"]
    # No account dimension: one series, its Maximum is the worst account's lag.
    assert lag["MetricStat"]["Metric"]["Dimensions"] == [{"Name": "service", "Value": "poller"}]
    assert lag["MetricStat"]["Stat"] == "Maximum"
    (dashboard,) = _resources(output, resolver, "AWS::CloudWatch::Dashboard").values()
    queries = [
        w["properties"]["query"]
        for w in json.loads(dashboard["DashboardBody"])["widgets"]
        if w["type"] == "log" and "by account" in w["properties"]["title"]
    ]
    assert len(queries) == 2
    for query in queries:
        assert query.startswith("SOURCE '<PollerLogGroup>'")
        assert "by accountSid" in query
    assert "max(summary.checkpoint_lag_seconds)" in queries[0]
    assert "poller run failed" in queries[1]


def rule_failures(**overrides: str) -> list[str]:
    """The AssertDescriptions of the template's Rules that CloudFormation would refuse for these parameter
    values (its rule functions: Fn::And/Or/Not/Equals/Contains/EachMemberEquals over Refs; a
    CommaDelimitedList is its items)."""
    template = load_template()
    values = {**parameter_defaults(template), **overrides}
    lists = {name for name, spec in template["Parameters"].items() if spec["Type"] == "CommaDelimitedList"}

    def value(node: Any) -> Any:
        if isinstance(node, dict):
            ((function, args),) = node.items()
            if function == "Ref":
                return values[args].split(",") if args in lists else values[args]
            found = [value(a) for a in args] if isinstance(args, list) else [value(args)]
            return {
                "Fn::And": lambda: all(found),
                "Fn::Or": lambda: any(found),
                "Fn::Not": lambda: not found[0],
                "Fn::Equals": lambda: found[0] == found[1],
                "Fn::Contains": lambda: found[1] in found[0],
                "Fn::EachMemberEquals": lambda: all(item == found[1] for item in found[0]),
            }[function]()
        return node

    return [
        assertion["AssertDescription"]
        for rule in template["Rules"].values()
        if "RuleCondition" not in rule or value(rule["RuleCondition"])
        for assertion in rule["Assertions"]
        if not value(assertion["Assert"])
    ]


def test_the_rules_refuse_no_account_and_a_reservation_with_many() -> None:
    stream = {"EnableEventStreams": "false"}
    assert rule_failures(TwilioSecretArn=ACME, **stream) == []
    assert rule_failures(TwilioSecretArns=f"{GLOBEX},{INITECH}", **stream) == []
    assert rule_failures(TwilioSecretNamePrefix="comms/", TwilioSecretNames="acme,globex", **stream) == []
    assert rule_failures(**stream) == [
        "set TwilioSecretArn, or list the accounts' secrets in TwilioSecretArns or TwilioSecretNames"
    ]
    assert rule_failures(TwilioSecretArns=f"{GLOBEX},", **stream) == [
        "TwilioSecretArns has an empty item (a stray comma)"
    ]
    assert rule_failures(TwilioSecretNamePrefix="comms/", TwilioSecretNames="acme,,globex", **stream) == [
        "TwilioSecretNames has an empty item (a stray comma)"
    ]
    # Without a prefix the functions could read every secret of the account.
    assert rule_failures(TwilioSecretNames="acme", **stream) == [
        "TwilioSecretNames needs TwilioSecretNamePrefix (e.g. comms-bridge/twilio/)"
    ]
    reserve = {"ReservePollerConcurrency": "true", **stream}
    assert rule_failures(TwilioSecretArn=ACME, **reserve) == []
    for many in ({"TwilioSecretArns": GLOBEX}, {"TwilioSecretNamePrefix": "c/", "TwilioSecretNames": "a"}):
        (refused,) = rule_failures(TwilioSecretArn=ACME, **many, **reserve)
        assert refused.startswith("ReservePollerConcurrency reserves one instance")


NAME_PREFIX = "comms/twilio/"
NAMED = "arn:aws:secretsmanager:us-east-1:123456789012:secret:comms/twilio/{}"


def test_named_accounts_get_a_schedule_each_passing_the_secrets_arn_without_its_suffix() -> None:
    output, resolver = deployed(
        TwilioSecretArn="", TwilioSecretNamePrefix=NAME_PREFIX, TwilioSecretNames="acme,globex-eu"
    )
    found = schedules(output, resolver)
    assert set(found) == {"NamedPollerScheduleacme", "NamedPollerScheduleglobexeu"}
    assert sorted(json.loads(s["Target"]["Input"])["twilioSecretArn"] for s in found.values()) == [
        NAMED.format("acme"),
        NAMED.format("globex-eu"),
    ]
    for schedule in found.values():
        assert schedule["Target"]["Arn"] == "<PollerFunction.Arn>"
        assert schedule["Target"]["RetryPolicy"] == {
            "MaximumRetryAttempts": 2,
            "MaximumEventAgeInSeconds": 60,
        }


@pytest.mark.parametrize(
    ("name", "accepted"),
    [
        ("acme", True),
        ("globex-eu", True),
        ("eu/initech_2", True),
        ("acme-europe1", True),  # seven after the hyphen: not a suffix
        ("acme-europe", False),  # -europe reads as the random suffix of a full ARN
        ("globex-AbCdEf", False),
        ("acme corp", False),
        ("a*", False),
        ("x" * 57, False),
    ],
)
def test_a_name_secrets_manager_would_read_as_a_full_arn_is_refused(name: str, accepted: bool) -> None:
    """A CommaDelimitedList's AllowedPattern applies to each item (CloudFormation's java.util.regex; this
    pattern means the same in Python's re)."""
    pattern = re.compile(load_template()["Parameters"]["TwilioSecretNames"]["AllowedPattern"])
    assert bool(pattern.fullmatch(name)) is accepted
    assert pattern.fullmatch("")  # the default: no names


@pytest.mark.parametrize(
    ("prefix", "accepted"),
    [
        ("", True),  # the default: no names
        ("comms-bridge/twilio/", True),
        ("twilio/", True),
        ("/", True),
        ("twilio", False),  # would also cover twilio-admin-db
        ("comms-bridge/twilio", False),
        ("twilio-", False),
        ("comms bridge/", False),
        ("*/", False),
    ],
)
def test_the_name_prefix_is_a_folder_ending_in_a_slash(prefix: str, accepted: bool) -> None:
    pattern = re.compile(load_template()["Parameters"]["TwilioSecretNamePrefix"]["AllowedPattern"])
    assert bool(pattern.fullmatch(prefix)) is accepted


def test_the_sample_account_event_is_what_a_named_accounts_schedule_sends() -> None:
    sample = json.loads((ROOT / "events" / "poller-schedule-account.json").read_text(encoding="utf-8"))
    output, resolver = deployed(
        TwilioSecretArn="", TwilioSecretNamePrefix="comms-bridge/twilio/", TwilioSecretNames="acme"
    )
    (schedule,) = schedules(output, resolver).values()
    assert json.loads(schedule["Target"]["Input"]) == sample


def test_named_accounts_are_read_under_the_prefix_and_listed_by_name_in_the_environment() -> None:
    output, resolver = deployed(
        TwilioSecretArn=ACME, TwilioSecretNamePrefix=NAME_PREFIX, TwilioSecretNames="acme,globex"
    )
    readable: dict[str, set[str]] = {}
    for role, statement in _statements(output, resolver):
        if statement["Action"] == "secretsmanager:GetSecretValue" and "Condition" not in statement:
            resources = statement["Resource"]
            readable.setdefault(role, set()).update(resources if isinstance(resources, list) else [resources])
    for role in ("PollerRole", "ErrorsRole", "StreamRole"):
        # One statement whatever the number of names: the secrets' ARNs end in a random suffix.
        assert NAMED.format("*") in readable[role], role
        assert not any(arn.endswith(":secret:*") for arn in readable[role])
    functions = _resources(output, resolver, "AWS::Lambda::Function")
    for name in ("PollerFunction", "ErrorsFunction", "StreamFunction"):
        env = functions[name]["Environment"]["Variables"]
        assert env["TWILIO_SECRET_ARN_PREFIX"] == NAMED.format("")
        assert env["TWILIO_SECRET_NAMES"] == "acme,globex"
        assert env["TWILIO_SECRET_ARN"] == ACME
    unnamed, unresolved = deployed(TwilioSecretArn=ACME)
    env = _resources(unnamed, unresolved, "AWS::Lambda::Function")["PollerFunction"]["Environment"]
    assert (env["Variables"]["TWILIO_SECRET_ARN_PREFIX"], env["Variables"]["TWILIO_SECRET_NAMES"]) == ("", "")


# The quotas docs/many-accounts.md counts against: CloudFormation's parameter value and resources per
# template, Lambda's environment (all variables of a function), IAM's inline policies per role.
PARAMETER_BYTES, RESOURCES, ENVIRONMENT_BYTES, ROLE_POLICY_CHARACTERS = 4096, 500, 4096, 10_240


def test_two_hundred_and_fifty_named_accounts_fit_every_quota_the_docs_count() -> None:
    names = ",".join(f"customer{n:03d}" for n in range(250))  # 11 characters each, 12 with its comma
    assert len(names.encode()) <= PARAMETER_BYTES
    output, resolver = deployed(
        TwilioSecretArn="", TwilioSecretNamePrefix=NAME_PREFIX, TwilioSecretNames=names
    )
    assert len(schedules(output, resolver)) == 250
    assert len(output["Resources"]) <= RESOURCES
    for name, function in _resources(output, resolver, "AWS::Lambda::Function").items():
        variables = function.get("Environment", {}).get("Variables", {})
        # A deployed table or topic has a longer name than its placeholder: count 96 characters for each.
        size = sum(len(k) + len(re.sub(r"<[^>]+>", "x" * 96, str(v))) for k, v in variables.items())
        assert size <= ENVIRONMENT_BYTES, (name, size)
    for name, role in _resources(output, resolver, "AWS::IAM::Role").items():
        policies = json.dumps([p["PolicyDocument"] for p in role.get("Policies", [])], separators=(",", ":"))
        assert len(policies) <= ROLE_POLICY_CHARACTERS, (name, len(policies))


def test_fifty_listed_arns_do_not_fit_the_lambda_environment() -> None:
    """Why TwilioSecretNames exists: at about 85 bytes an ARN the list outgrows the environment first."""
    arns = ",".join(SECRET.format(f"customer-{n:02d}") for n in range(50))
    output, resolver = deployed(TwilioSecretArn="", TwilioSecretArns=arns)
    variables = _resources(output, resolver, "AWS::Lambda::Function")["PollerFunction"]["Environment"]
    size = sum(len(k.encode()) + len(str(v).encode()) for k, v in variables["Variables"].items())
    assert size > ENVIRONMENT_BYTES


def test_the_transforms_run_language_extensions_before_sam() -> None:
    assert load_template()["Transform"] == ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"]
