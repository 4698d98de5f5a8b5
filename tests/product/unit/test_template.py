"""template.yaml, transformed by aws-sam-translator, declares what issue 5 and contract section 1 promise."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from samtranslator.translator.transform import transform  # type: ignore[import-untyped]
from samtranslator.yaml_helper import yaml_parse  # type: ignore[import-untyped]

from comms_bridge.enricher.settings import EnricherSettings
from comms_bridge.poller.config import PollerConfig
from comms_bridge.settings import Settings
from comms_bridge_tools.local_stack import (
    TEMPLATE_PATH,
    Resolver,
    expand_for_each,
    load_template,
    parameter_defaults,
)
from comms_bridge_tools.sync_template_schemas import REGISTERED, SCHEMA_DIR, synced

TWILIO_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:comms-bridge/twilio-AbCdEf"
SLACK_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:comms-bridge/slack-AbCdEf"
DEFAULTS = {"TwilioSecretArn": TWILIO_SECRET}
EVERYTHING_ON = {
    "TwilioSecretArn": TWILIO_SECRET,
    "SlackWebhookSecretArn": SLACK_SECRET,
    "AlertEmail": "ops@example.com",
    "EventBusName": "default",
    "EnableTracing": "true",
}
EVENT_STREAMS = {
    **EVERYTHING_ON,
    "EnableEventStreams": "true",
    "EventStreamsExternalId": "0123456789abcdef0123456789abcdef",
}
SCENARIOS = {"defaults": DEFAULTS, "everything-on": EVERYTHING_ON, "event-streams": EVENT_STREAMS}
METRICS = (
    "OperationsSeen",
    "ChangesDetected",
    "EventsPublished",
    "PublishFailures",
    "SkippedMalformedItems",
    "CommsApiRequests",
    "RunDurationMs",
    "CheckpointLagSeconds",
    "ErrorsRead",
    "AlertsSent",
    "AlertFailures",
)


class _Placeholders(dict[str, Any]):
    """Every resource resolves to a recognisable placeholder: <LogicalId> or <LogicalId.Attribute>."""

    def __contains__(self, key: object) -> bool:
        return True

    def __missing__(self, key: str) -> str:
        return f"<{key}>"


class _NoManagedPolicies:
    def load(self) -> dict[str, str]:
        return {}


def _sam_transform(parameters: dict[str, str]) -> dict[str, Any]:
    # What AWS::LanguageExtensions does before the SAM transform: the per-account schedules.
    document = expand_for_each(yaml_parse(TEMPLATE_PATH.read_text(encoding="utf-8")), parameters)
    # What `sam package` does: code locations become S3 URIs.
    for resource in document["Resources"].values():
        props = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if key in props:
                props[key] = "s3://bucket/key.zip"
    output: dict[str, Any] = transform(document, dict(parameters), _NoManagedPolicies())
    return output


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def deployed(request: pytest.FixtureRequest) -> tuple[dict[str, Any], Resolver]:
    """The transformed template and a resolver with that scenario's parameter values."""
    parameters = {**parameter_defaults(load_template()), **SCENARIOS[request.param]}
    output = _sam_transform(parameters)
    return output, Resolver(template=output, parameters=parameters, resource_names=_Placeholders())


@pytest.fixture(scope="module")
def default_stack() -> tuple[dict[str, Any], Resolver]:
    parameters = {**parameter_defaults(load_template()), **DEFAULTS}
    output = _sam_transform(parameters)
    return output, Resolver(template=output, parameters=parameters, resource_names=_Placeholders())


def _resources(output: dict[str, Any], resolver: Resolver, resource_type: str) -> dict[str, dict[str, Any]]:
    """Resources of a type that exist under the scenario's conditions, properties resolved."""
    found = {}
    for logical_id, resource in output["Resources"].items():
        if resource["Type"] != resource_type:
            continue
        if "Condition" in resource and not resolver.condition(resource["Condition"]):
            continue
        found[logical_id] = resolver.resolve(resource.get("Properties", {}))
    return found


def _function_env(output: dict[str, Any], resolver: Resolver, function: str) -> dict[str, Any]:
    """The resolved environment variables of one function."""
    properties = _resources(output, resolver, "AWS::Lambda::Function")[function]
    env: dict[str, Any] = properties["Environment"]["Variables"]
    return env


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# ---------------------------------------------------------------- parameters


def test_contract_parameters_and_defaults() -> None:
    parameters = load_template()["Parameters"]
    defaults = parameter_defaults(load_template()) | {"TwilioSecretArn": None}
    assert (
        defaults.items()
        >= {
            "ScheduleExpression": "rate(1 minute)",
            "CommsApiBaseUrl": "https://comms.twilio.com/v1",
            "EventBusName": "",
            "EventSource": "twilio.comms",
            "FailedCountThreshold": "10",
            "FailedRateThreshold": "0.05",
            "StallAfterMinutes": "30",
            "AlertEmail": "",
            "SlackWebhookSecretArn": "",
            "TwilioSecretArn": None,
        }.items()
    )
    # The secret is chosen at deploy time: empty only with TwilioSecretArns (the rule refuses neither).
    assert parameters["TwilioSecretArn"]["Default"] == ""
    assert parameters["TwilioSecretArns"]["Type"] == "CommaDelimitedList"
    assert parameters["TwilioSecretArns"]["Default"] == ""
    assert "TwilioSecretsNeedAtLeastOne" in load_template()["Rules"]
    assert parameters["StallAfterMinutes"]["Type"] == "Number"
    # The thresholds are strings whose pattern admits only JSON numbers EventBridge can match on.
    for name in ("FailedCountThreshold", "FailedRateThreshold"):
        assert parameters[name]["Type"] == "String"


def test_every_parameter_is_described_and_constrained() -> None:
    for name, spec in load_template()["Parameters"].items():
        assert len(spec.get("Description", "")) > 20, name
        constraints = {"AllowedValues", "AllowedPattern", "MinValue", "MaxValue"} & spec.keys()
        assert constraints, f"{name} accepts anything"


# ---------------------------------------------------------------- state


def test_state_table(default_stack: tuple[dict[str, Any], Resolver]) -> None:
    output, resolver = default_stack
    table = _resources(output, resolver, "AWS::DynamoDB::Table")["StateTable"]
    assert table["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["SSESpecification"]["SSEEnabled"] is True
    assert output["Resources"]["StateTable"]["DeletionPolicy"] == "Retain"


def test_idempotency_table_uses_powertools_defaults(default_stack: tuple[dict[str, Any], Resolver]) -> None:
    output, resolver = default_stack
    table = _resources(output, resolver, "AWS::DynamoDB::Table")["IdempotencyTable"]
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert table["SSESpecification"]["SSEEnabled"] is True


# ---------------------------------------------------------------- events


def test_bus_is_created_only_without_a_name(deployed: tuple[dict[str, Any], Resolver]) -> None:
    output, resolver = deployed
    buses = _resources(output, resolver, "AWS::Events::EventBus")
    bus_name = resolver.resolve(output["Outputs"]["EventBusName"]["Value"])
    if resolver.parameters["EventBusName"]:
        assert buses == {}
        assert bus_name == resolver.parameters["EventBusName"]
    else:
        assert list(buses) == ["EventBus"]
        assert bus_name == "<EventBus>"
    for function in ("PollerFunction", "ErrorsFunction"):
        assert _function_env(output, resolver, function)["EVENT_BUS_NAME"] == bus_name


def test_archive_keeps_our_events(default_stack: tuple[dict[str, Any], Resolver]) -> None:
    output, resolver = default_stack
    archive = _resources(output, resolver, "AWS::Events::Archive")["EventArchive"]
    assert archive["SourceArn"] == "<EventBus.Arn>"
    assert archive["EventPattern"] == {"source": ["twilio.comms"]}
    assert int(archive["RetentionDays"]) > 0


def test_schema_registry_holds_the_schema_files(default_stack: tuple[dict[str, Any], Resolver]) -> None:
    output, resolver = default_stack
    schemas = _resources(output, resolver, "AWS::EventSchemas::Schema")
    assert len(_resources(output, resolver, "AWS::EventSchemas::Registry")) == 1
    expected = {entry.logical_id: entry for entry in REGISTERED}
    assert set(schemas) == set(expected), "every detail-type of contract section 3 has a registered schema"
    for logical_id, schema in schemas.items():
        file = SCHEMA_DIR / expected[logical_id].file_name
        assert json.loads(schema["Content"]) == json.loads(file.read_text(encoding="utf-8")), logical_id
        assert schema["Type"] == "JSONSchemaDraft4"
        assert schema["RegistryName"] == "<SchemaRegistry.RegistryName>"
    assert len({schema["SchemaName"] for schema in schemas.values()}) == len(schemas)


def test_template_schema_section_is_in_sync_with_the_files() -> None:
    text = TEMPLATE_PATH.read_text(encoding="utf-8")
    assert synced(text) == text, "run: python -m comms_bridge_tools.sync_template_schemas"
    assert all((SCHEMA_DIR / entry.file_name).is_file() for entry in REGISTERED)


# ---------------------------------------------------------------- poller


def test_poller_schedule_has_retries_and_a_dlq(default_stack: tuple[dict[str, Any], Resolver]) -> None:
    output, resolver = default_stack
    (schedule,) = _resources(output, resolver, "AWS::Scheduler::Schedule").values()
    assert schedule["ScheduleExpression"] == "rate(1 minute)"
    assert schedule["Target"]["Arn"] == "<PollerFunction.Arn>"
    assert schedule["Target"]["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    assert schedule["Target"]["DeadLetterConfig"] == {"Arn": "<PollerDeadLetterQueue.Arn>"}
    assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert "StackName" in json.dumps(
        output["Resources"]["PollerFunctionPollerSchedule"]["Properties"]["Name"]
    )
    role = _resources(output, resolver, "AWS::IAM::Role")[
        schedule["Target"]["RoleArn"].strip("<>").split(".")[0]
    ]
    granted = {
        (statement["Action"], json.dumps(statement["Resource"]))
        for policy in role["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
    }
    assert ("sqs:SendMessage", '"<PollerDeadLetterQueue.Arn>"') in granted
    assert ("lambda:InvokeFunction", '"<PollerFunction.Arn>"') in granted


def test_poller_function(default_stack: tuple[dict[str, Any], Resolver]) -> None:
    output, resolver = default_stack
    function = _resources(output, resolver, "AWS::Lambda::Function")["PollerFunction"]
    assert function["Runtime"] == "python3.13"
    assert function["Architectures"] == ["arm64"]
    (layer,) = function["Layers"]
    assert layer.startswith("<SharedLayer")  # SAM appends a content hash to the layer version id
    assert function["Handler"] == "app.lambda_handler"
    assert function["Timeout"] == "60"


def test_default_parameters_reserve_no_concurrency(default_stack: tuple[dict[str, Any], Resolver]) -> None:
    """A first deploy with the defaults must work in a new account whose concurrency quota is 10, where
    reserving any concurrency fails: the transformed template gives the poller no reservation."""
    output, resolver = default_stack
    function = _resources(output, resolver, "AWS::Lambda::Function")["PollerFunction"]
    assert "ReservedConcurrentExecutions" not in function
    for properties in _resources(output, resolver, "AWS::Lambda::Function").values():
        assert "ReservedConcurrentExecutions" not in properties


def test_poller_concurrency_can_be_reserved() -> None:
    parameters = {**parameter_defaults(load_template()), **DEFAULTS, "ReservePollerConcurrency": "true"}
    output = _sam_transform(parameters)
    resolver = Resolver(template=output, parameters=parameters, resource_names=_Placeholders())
    function = _resources(output, resolver, "AWS::Lambda::Function")["PollerFunction"]
    assert function["ReservedConcurrentExecutions"] == 1


def test_shared_layer_is_named_per_stack(default_stack: tuple[dict[str, Any], Resolver]) -> None:
    output, resolver = default_stack
    (layer,) = _resources(output, resolver, "AWS::Lambda::LayerVersion").values()
    assert layer["LayerName"] == "comms-bridge-shared"  # the resolver's stack name
    assert "AWS::StackName" in json.dumps(
        load_template()["Resources"]["SharedLayer"]["Properties"]["LayerName"]
    )


SCHEDULES = [str(value) for value in load_template()["Parameters"]["ScheduleExpression"]["AllowedValues"]]


@pytest.mark.parametrize("expression", SCHEDULES)
def test_schedule_period_is_derived_from_the_expression(expression: str) -> None:
    """Nothing to keep in step by hand: the retry window, the lag alarm and the dashboard follow the
    expression's own period."""
    number, unit = expression.removeprefix("rate(").removesuffix(")").split()
    period = int(number) * {"minute": 60, "hour": 3600}[unit.removesuffix("s")]
    parameters = {**parameter_defaults(load_template()), **DEFAULTS, "ScheduleExpression": expression}
    output = _sam_transform(parameters)
    resolver = Resolver(template=output, parameters=parameters, resource_names=_Placeholders())
    (schedule,) = _resources(output, resolver, "AWS::Scheduler::Schedule").values()
    assert schedule["ScheduleExpression"] == expression
    assert schedule["Target"]["RetryPolicy"]["MaximumEventAgeInSeconds"] == period
    alarm = _alarms(output, resolver)["CheckpointLagAlarm"]
    by_id = {metric["Id"]: metric for metric in alarm["Metrics"]}
    assert int(by_id["lag"]["MetricStat"]["Period"]) == period
    assert by_id["periods"]["Expression"] == f"lag / {period}"
    (dashboard,) = _resources(output, resolver, "AWS::CloudWatch::Dashboard").values()
    (lag_widget,) = [
        widget["properties"]
        for widget in json.loads(dashboard["DashboardBody"])["widgets"]
        if widget["type"] == "metric" and widget["properties"]["title"].startswith("Checkpoint lag")
    ]
    assert lag_widget["period"] == period
    assert lag_widget["metrics"][1][0]["expression"] == f"lag / {period}"
    assert "SchedulePeriodSeconds" not in load_template()["Parameters"]


@pytest.mark.parametrize(
    "timeout", [str(v) for v in load_template()["Parameters"]["PollerTimeoutSeconds"]["AllowedValues"]]
)
def test_poller_timeout_and_time_budget_agree(timeout: str) -> None:
    parameters = {**parameter_defaults(load_template()), **DEFAULTS, "PollerTimeoutSeconds": timeout}
    output = _sam_transform(parameters)
    resolver = Resolver(template=output, parameters=parameters, resource_names=_Placeholders())
    function = _resources(output, resolver, "AWS::Lambda::Function")["PollerFunction"]
    env = function["Environment"]["Variables"]
    margin, lease, seconds = int(env["POLLER_SAFETY_MARGIN_SECONDS"]), int(env["LEASE_SECONDS"]), int(timeout)
    assert int(function["Timeout"]) == seconds
    # The run keeps a margin to publish and checkpoint, and still has most of its time for work ...
    assert 5 <= margin <= seconds / 3
    # ... and no overlapping run can take the lease while this one may still be running.
    assert lease > seconds


def test_stall_minutes_become_seconds() -> None:
    template = load_template()
    mapping = template["Mappings"]["StallSeconds"]
    for minutes in template["Parameters"]["StallAfterMinutes"]["AllowedValues"]:
        assert mapping[str(minutes)]["Seconds"] == int(minutes) * 60


def test_poller_environment_matches_the_contract(deployed: tuple[dict[str, Any], Resolver]) -> None:
    output, resolver = deployed
    env = _function_env(output, resolver, "PollerFunction")
    assert env == env | {
        "COMMS_API_BASE_URL": "https://comms.twilio.com/v1",
        "TWILIO_SECRET_ARN": TWILIO_SECRET,
        "STATE_TABLE_NAME": "<StateTable>",
        "EVENT_SOURCE": "twilio.comms",
        "STALL_AFTER_SECONDS": 1800,
        "BOOTSTRAP_MODE": "baseline",
        "POLLER_SAFETY_MARGIN_SECONDS": 10,
        "POWERTOOLS_SERVICE_NAME": "poller",
        "POWERTOOLS_METRICS_NAMESPACE": "CommsBridge",
    }
    assert {"LOOKBACK_SECONDS", "FOLLOW_UP_CADENCE", "PAGE_SIZE", "LEASE_SECONDS"} <= env.keys()
    environ = {key: str(value) for key, value in env.items()}
    settings = Settings.from_env(environ)
    assert settings.stall_after_seconds == 1800
    # The poller reads the tuning values the template passes without complaint.
    config = PollerConfig.from_env(environ)
    assert config.safety_margin_seconds == 10
    assert config.lease_seconds == 90


def test_errors_environment_matches_the_contract(deployed: tuple[dict[str, Any], Resolver]) -> None:
    output, resolver = deployed
    env = _function_env(output, resolver, "ErrorsFunction")
    assert env == env | {
        "COMMS_API_BASE_URL": "https://comms.twilio.com/v1",
        "TWILIO_SECRET_ARN": TWILIO_SECRET,
        "EVENT_SOURCE": "twilio.comms",
        "IDEMPOTENCY_TABLE_NAME": "<IdempotencyTable>",
        "SLACK_WEBHOOK_SECRET_ARN": resolver.parameters["SlackWebhookSecretArn"],
        "ALERT_TOPIC_ARN": "<AlertTopic>",
        "MAX_ERRORS": "1000",
        "POWERTOOLS_SERVICE_NAME": "errors",
        "POWERTOOLS_METRICS_NAMESPACE": "CommsBridge",
    }
    environ = {key: str(value) for key, value in env.items()}
    Settings.from_env(environ)
    assert EnricherSettings.from_env(environ).max_errors == 1000


# ---------------------------------------------------------------- errors enricher


def test_errors_trigger_rule(default_stack: tuple[dict[str, Any], Resolver]) -> None:
    output, resolver = default_stack
    rule = _resources(output, resolver, "AWS::Events::Rule")["ErrorsFunctionErrorsTriggerRule"]
    assert json.loads(rule["EventPattern"]) == {
        "source": ["twilio.comms"],
        "detail-type": ["Email Operation Status Changed", "Email Operation Stats Changed"],
        "detail": {
            "status": ["COMPLETED"],
            "stats": {"failed": [{"numeric": [">=", 10]}]},
            "rates": {"failed": [{"numeric": [">=", 0.05]}]},
        },
        "$or": [
            {"detail-type": ["Email Operation Status Changed"]},
            {"detail": {"delta": {"failed": [{"numeric": [">", 0]}]}}},
        ],
    }
    assert rule["EventBusName"] == "<EventBus>"
    (target,) = rule["Targets"]
    assert target["Arn"] == "<ErrorsQueue.Arn>"
    assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    assert target["DeadLetterConfig"] == {"Arn": "<ErrorsDeadLetterQueue.Arn>"}


# EventBridge matches numbers of at most 1e9 (5e9 in later documentation) with six decimals of precision.
EVENTBRIDGE_NUMERIC_LIMIT = 1_000_000_000
EVENTBRIDGE_DECIMALS = 6


def _threshold_pattern(name: str) -> re.Pattern[str]:
    return re.compile(load_template()["Parameters"][name]["AllowedPattern"])


def _rule_pattern_with(count: str, rate: str) -> dict[str, Any]:
    parameters = {
        **parameter_defaults(load_template()),
        **DEFAULTS,
        "FailedCountThreshold": count,
        "FailedRateThreshold": rate,
    }
    resolver = Resolver(template=load_template(), parameters=parameters, resource_names=_Placeholders())
    rule = load_template()["Resources"]["ErrorsFunctionErrorsTriggerRule"]
    document: dict[str, Any] = json.loads(resolver.resolve(rule["Properties"]["EventPattern"]))
    return document


@settings(max_examples=300, deadline=None)
@given(
    count=st.from_regex(_threshold_pattern("FailedCountThreshold"), fullmatch=True),
    rate=st.from_regex(_threshold_pattern("FailedRateThreshold"), fullmatch=True),
)
def test_every_accepted_threshold_is_a_number_eventbridge_matches(count: str, rate: str) -> None:
    document = _rule_pattern_with(count, rate)  # valid JSON, whatever the two values
    detail = document["detail"]
    (matched_count,) = [v for v in detail["stats"]["failed"][0]["numeric"] if not isinstance(v, str)]
    (matched_rate,) = [v for v in detail["rates"]["failed"][0]["numeric"] if not isinstance(v, str)]
    assert isinstance(matched_count, int) and 0 <= matched_count < EVENTBRIDGE_NUMERIC_LIMIT
    assert isinstance(matched_rate, int | float) and 0 <= matched_rate <= 1
    assert len(rate.partition(".")[2]) <= EVENTBRIDGE_DECIMALS


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FailedCountThreshold", "010"),  # not JSON
        ("FailedCountThreshold", "1e3"),
        ("FailedCountThreshold", "-1"),
        ("FailedCountThreshold", "2.5"),
        ("FailedCountThreshold", "1000000000"),  # beyond EventBridge's numeric range
        ("FailedCountThreshold", ""),
        ("FailedRateThreshold", ".05"),  # not JSON
        ("FailedRateThreshold", "5."),
        ("FailedRateThreshold", "0.0000001"),  # seven decimals: EventBridge keeps six
        ("FailedRateThreshold", "1.5"),
        ("FailedRateThreshold", "5e-2"),
        ("FailedRateThreshold", "+0.1"),
    ],
)
def test_thresholds_eventbridge_cannot_match_are_refused(name: str, value: str) -> None:
    assert _threshold_pattern(name).fullmatch(value) is None


@pytest.mark.parametrize(
    ("count", "rate"), [("0", "0"), ("10", "0.05"), ("999999999", "1.000000"), ("7", "1")]
)
def test_threshold_edges_are_accepted(count: str, rate: str) -> None:
    assert _threshold_pattern("FailedCountThreshold").fullmatch(count)
    assert _threshold_pattern("FailedRateThreshold").fullmatch(rate)
    assert _rule_pattern_with(count, rate)["detail"]["stats"]["failed"] == [{"numeric": [">=", int(count)]}]


def test_errors_function_concurrency_is_bounded_without_a_reservation(
    default_stack: tuple[dict[str, Any], Resolver],
) -> None:
    """Contract §6: the queue's event source mapping bounds the alerter, and a new account (whose quota
    leaves nothing to reserve) can deploy it."""
    output, resolver = default_stack
    function = _resources(output, resolver, "AWS::Lambda::Function")["ErrorsFunction"]
    assert "ReservedConcurrentExecutions" not in function
    (mapping,) = _resources(output, resolver, "AWS::Lambda::EventSourceMapping").values()
    assert mapping["EventSourceArn"] == "<ErrorsQueue.Arn>"
    assert mapping["FunctionName"] == "<ErrorsFunction>"
    assert 2 <= mapping["ScalingConfig"]["MaximumConcurrency"] <= 5
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    queue = _resources(output, resolver, "AWS::SQS::Queue")["ErrorsQueue"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == "<ErrorsDeadLetterQueue.Arn>"
    assert int(queue["VisibilityTimeout"]) >= int(function["Timeout"])
    assert all(
        c["FunctionName"] != "<ErrorsFunction>"
        for c in _resources(output, resolver, "AWS::Lambda::EventInvokeConfig").values()
    )


def test_errors_queue_accepts_only_our_rules(default_stack: tuple[dict[str, Any], Resolver]) -> None:
    output, resolver = default_stack
    policy = _resources(output, resolver, "AWS::SQS::QueuePolicy")["ErrorsQueuePolicy"]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Resource"] == "<ErrorsQueue.Arn>"
    assert sorted(statement["Condition"]["ArnEquals"]["aws:SourceArn"]) == [
        "<ErrorsFunctionErrorsTriggerRule.Arn>",
        "<StalledAlertRule.Arn>",
    ]


def test_only_the_stacks_functions_put_its_source_on_its_bus(
    deployed: tuple[dict[str, Any], Resolver],
) -> None:
    """Contract §6: the functions' PutEvents is limited to the stack's source, and on a bus the stack
    created, every other principal is denied that source."""
    output, resolver = deployed
    roles = _resources(output, resolver, "AWS::IAM::Role")
    publishers = ["ErrorsRole", "PollerRole", *(["StreamRole"] if "StreamRole" in roles else [])]
    for name in publishers:
        (put,) = (
            s
            for s in roles[name]["Policies"][0]["PolicyDocument"]["Statement"]
            if "events:PutEvents" in _as_list(s["Action"])
        )
        assert put["Condition"] == {"StringEquals": {"events:source": ["twilio.comms"]}}, name
    policies = _resources(output, resolver, "AWS::Events::EventBusPolicy")
    if not resolver.condition("CreateBus"):
        assert policies == {}
        return
    statement = policies["EventBusPolicy"]["Statement"]
    assert (statement["Effect"], statement["Action"]) == ("Deny", "events:PutEvents")
    assert statement["Condition"]["StringEquals"] == {"events:source": ["twilio.comms"]}
    assert sorted(statement["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]) == [
        f"<{name}.Arn>" for name in publishers
    ]


def test_rule_dlq_accepts_only_our_rules(default_stack: tuple[dict[str, Any], Resolver]) -> None:
    output, resolver = default_stack
    policy = _resources(output, resolver, "AWS::SQS::QueuePolicy")["ErrorsDeadLetterQueuePolicy"]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert sorted(statement["Condition"]["ArnEquals"]["aws:SourceArn"]) == [
        "<ErrorsFunctionErrorsTriggerRule.Arn>",
        "<StalledAlertRule.Arn>",
    ]


# ---------------------------------------------------------------- alerts


def test_alert_topic_is_encrypted_with_a_key_alarms_and_rules_can_use(
    default_stack: tuple[dict[str, Any], Resolver],
) -> None:
    output, resolver = default_stack
    topic = _resources(output, resolver, "AWS::SNS::Topic")["AlertTopic"]
    assert topic["KmsMasterKeyId"] == "<AlertTopicKey>"
    key = _resources(output, resolver, "AWS::KMS::Key")["AlertTopicKey"]
    assert key["EnableKeyRotation"] is True
    services = {
        service
        for statement in key["KeyPolicy"]["Statement"]
        for service in _as_list(statement["Principal"].get("Service", []))
    }
    assert services == {"cloudwatch.amazonaws.com"}


def test_stalled_events_go_through_the_alerter(default_stack: tuple[dict[str, Any], Resolver]) -> None:
    """Before: a stall reached e-mail as raw event JSON straight from the rule, and never Slack. After: the
    rule feeds the alerter's queue, and no rule publishes to the topic."""
    output, resolver = default_stack
    rule = _resources(output, resolver, "AWS::Events::Rule")["StalledAlertRule"]
    assert rule["EventPattern"] == {"source": ["twilio.comms"], "detail-type": ["Email Operation Stalled"]}
    (target,) = rule["Targets"]
    assert target["Arn"] == "<ErrorsQueue.Arn>"
    assert target["DeadLetterConfig"] == {"Arn": "<ErrorsDeadLetterQueue.Arn>"}
    policy = _resources(output, resolver, "AWS::SNS::TopicPolicy")["AlertTopicPolicy"]
    assert all(
        s["Principal"] != {"Service": "events.amazonaws.com"} for s in policy["PolicyDocument"]["Statement"]
    )


def test_alert_email_subscription_is_optional(deployed: tuple[dict[str, Any], Resolver]) -> None:
    output, resolver = deployed
    subscriptions = _resources(output, resolver, "AWS::SNS::Subscription")
    if resolver.parameters["AlertEmail"]:
        (subscription,) = subscriptions.values()
        assert subscription == {
            "TopicArn": "<AlertTopic>",
            "Protocol": "email",
            "Endpoint": "ops@example.com",
        }
    else:
        assert subscriptions == {}


def _alarms(output: dict[str, Any], resolver: Resolver) -> dict[str, dict[str, Any]]:
    return _resources(output, resolver, "AWS::CloudWatch::Alarm")


def _alarm_on(
    alarms: dict[str, dict[str, Any]], namespace: str, metric: str, dimension: str
) -> dict[str, Any]:
    (alarm,) = (
        a
        for a in alarms.values()
        if a.get("Namespace") == namespace
        and a.get("MetricName") == metric
        and a["Dimensions"][0]["Value"] == dimension
    )
    return alarm


def test_alarms_go_to_the_alert_topic(default_stack: tuple[dict[str, Any], Resolver]) -> None:
    output, resolver = default_stack
    alarms = _alarms(output, resolver)
    assert len(alarms) >= 6
    for name, alarm in alarms.items():
        assert alarm["AlarmActions"] == ["<AlertTopic>"], name
    assert _alarm_on(alarms, "AWS/Lambda", "Errors", "<PollerFunction>")["Threshold"] == 1
    assert _alarm_on(alarms, "AWS/Lambda", "Throttles", "<PollerFunction>")["Threshold"] == 1
    for queue in ("PollerDeadLetterQueue", "ErrorsDeadLetterQueue"):
        alarm = _alarm_on(alarms, "AWS/SQS", "ApproximateNumberOfMessagesVisible", f"<{queue}.QueueName>")
        assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")


def test_alarms_on_publish_and_permanent_alert_failures(
    default_stack: tuple[dict[str, Any], Resolver],
) -> None:
    output, resolver = default_stack
    alarms = _alarms(output, resolver)
    permanent = _alarm_on(alarms, "CommsBridge", "PermanentAlertFailures", "errors")
    assert (permanent["Threshold"], permanent["EvaluationPeriods"]) == (1, 1)
    publish = alarms["PublishFailuresAlarm"]
    services = {
        m["MetricStat"]["Metric"]["Dimensions"][0]["Value"]
        for m in publish["Metrics"]
        if "MetricStat" in m and m["MetricStat"]["Metric"]["MetricName"] == "PublishFailures"
    }
    assert services == {"poller", "errors"}


def test_function_error_alarms_do_not_fire_on_one_deliberate_retry(
    default_stack: tuple[dict[str, Any], Resolver],
) -> None:
    """Before: any one failed invocation (the retry the design relies on) paged. After: two 5-minute
    periods in a row."""
    output, resolver = default_stack
    alarms = _alarms(output, resolver)
    for function in ("<PollerFunction>", "<ErrorsFunction>"):
        alarm = _alarm_on(alarms, "AWS/Lambda", "Errors", function)
        assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (2, 2), function


def test_checkpoint_lag_alarm_is_three_schedule_periods(
    default_stack: tuple[dict[str, Any], Resolver],
) -> None:
    output, resolver = default_stack
    alarm = _alarms(output, resolver)["CheckpointLagAlarm"]
    by_id = {metric["Id"]: metric for metric in alarm["Metrics"]}
    stat = by_id["lag"]["MetricStat"]
    assert stat["Metric"]["Namespace"] == "CommsBridge"
    assert stat["Metric"]["MetricName"] == "CheckpointLagSeconds"
    assert stat["Period"] == 60
    assert by_id["periods"]["Expression"] == "lag / 60"
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (3, "GreaterThanThreshold")
    assert alarm["TreatMissingData"] == "breaching", "a poller that stopped reporting must alarm too"


def test_dashboard_shows_every_metric(default_stack: tuple[dict[str, Any], Resolver]) -> None:
    output, resolver = default_stack
    (dashboard,) = _resources(output, resolver, "AWS::CloudWatch::Dashboard").values()
    body = json.loads(dashboard["DashboardBody"])
    shown = {
        item
        for widget in body["widgets"]
        for row in widget["properties"].get("metrics", [])
        for item in row
        if isinstance(item, str)
    }
    assert set(METRICS) <= shown


def test_log_groups_have_retention(default_stack: tuple[dict[str, Any], Resolver]) -> None:
    output, resolver = default_stack
    groups = _resources(output, resolver, "AWS::Logs::LogGroup")
    functions = _resources(output, resolver, "AWS::Lambda::Function")
    for name in ("PollerFunction", "ErrorsFunction"):
        group = functions[name]["LoggingConfig"]["LogGroup"].strip("<>")
        assert groups[group]["RetentionInDays"] == "30"


# ---------------------------------------------------------------- least privilege


def _statements(output: dict[str, Any], resolver: Resolver) -> Iterator[tuple[str, dict[str, Any]]]:
    for logical_id, role in _resources(output, resolver, "AWS::IAM::Role").items():
        assert not role.get("ManagedPolicyArns"), f"{logical_id}: managed policies are not scoped"
        for policy in role.get("Policies", []):
            for statement in _as_list(policy["PolicyDocument"]["Statement"]):
                yield logical_id, statement
    for logical_id, policy in _resources(output, resolver, "AWS::IAM::Policy").items():
        for statement in _as_list(policy["PolicyDocument"]["Statement"]):
            yield logical_id, statement


# X-Ray has no resource-level permissions for these actions; they are granted only with EnableTracing=true.
UNSCOPABLE = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
# Account-wide, no resource-level permissions: Twilio's Kinesis quickstart grants it to the sink's role.
ACCOUNT_WIDE = {"kinesis:DescribeLimits"}


def test_every_iam_statement_names_its_actions_and_resources(
    deployed: tuple[dict[str, Any], Resolver],
) -> None:
    output, resolver = deployed
    statements = list(_statements(output, resolver))
    assert statements
    for role, statement in statements:
        assert statement["Effect"] == "Allow"
        actions = _as_list(statement["Action"])
        assert all("*" not in action for action in actions), f"{role}: wildcard action in {actions}"
        resources = _as_list(statement["Resource"])
        assert resources, role
        if set(actions) <= UNSCOPABLE:
            assert resolver.parameters["EnableTracing"] == "true"
            continue
        if set(actions) <= ACCOUNT_WIDE:
            assert role == "EventStreamsWriterRole"
            continue
        assert all("*" not in json.dumps(r) or json.dumps(r).endswith(':*"') for r in resources), (
            f"{role}: {actions} on {resources}"
        )
        assert all(r != "*" for r in resources), role


def _readers_of(output: dict[str, Any], resolver: Resolver, secret: str) -> set[str]:
    return {
        role
        for role, statement in _statements(output, resolver)
        if "secretsmanager:GetSecretValue" in _as_list(statement["Action"])
        and secret in _as_list(statement["Resource"])
    }


def test_secrets_are_readable_only_by_the_functions_that_need_them(
    deployed: tuple[dict[str, Any], Resolver],
) -> None:
    output, resolver = deployed
    twilio_readers = {"PollerRole", "ErrorsRole"}
    if resolver.parameters["EnableEventStreams"] == "true":
        twilio_readers.add("StreamRole")  # the consumer fetches operations with the poller's credentials
    assert _readers_of(output, resolver, TWILIO_SECRET) == twilio_readers
    if resolver.parameters["SlackWebhookSecretArn"]:
        assert _readers_of(output, resolver, SLACK_SECRET) == {"ErrorsRole"}
    granted = [json.dumps(s["Resource"]) for _, s in _statements(output, resolver)]
    assert all("secretsmanager" not in g or "*" not in g for g in granted)


def test_poller_cannot_touch_what_it_does_not_use(default_stack: tuple[dict[str, Any], Resolver]) -> None:
    output, resolver = default_stack
    poller = [s for role, s in _statements(output, resolver) if role == "PollerRole"]
    resources = {json.dumps(r) for s in poller for r in _as_list(s["Resource"])}
    assert not any(
        name in r for r in resources for name in ("IdempotencyTable", "AlertTopic", "ErrorsDeadLetter")
    )


def test_transform_does_not_mutate_the_template_between_scenarios() -> None:
    before = copy.deepcopy(load_template())
    defaults = {**parameter_defaults(before), **DEFAULTS}
    first = _sam_transform(defaults)
    _sam_transform({**parameter_defaults(before), **EVERYTHING_ON})
    assert load_template() == before
    assert Path(TEMPLATE_PATH).is_file()
    # What the module-scoped fixtures rely on: one scenario's transform leaves nothing behind for the next.
    assert _sam_transform(defaults) == first


# boto3 client methods the layer calls -> the IAM action each needs (TransactWriteItems is authorized per item
# by the Put/Update/Delete/ConditionCheck actions it contains).
DYNAMODB_ACTIONS = {
    "get_item": ["dynamodb:GetItem"],
    "batch_get_item": ["dynamodb:BatchGetItem"],
    "query": ["dynamodb:Query"],
    "put_item": ["dynamodb:PutItem"],
    "update_item": ["dynamodb:UpdateItem"],
    "delete_item": ["dynamodb:DeleteItem"],
    "batch_write_item": ["dynamodb:BatchWriteItem"],
    "transact_write_items": [
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:ConditionCheckItem",
    ],
    "scan": ["dynamodb:Scan"],
}


def test_poller_role_grants_every_state_table_call_the_code_makes(
    default_stack: tuple[dict[str, Any], Resolver],
) -> None:
    output, resolver = default_stack
    poller = SCHEMA_DIR.parents[1] / "poller"
    called = {
        method
        for module in poller.glob("*.py")
        for method in DYNAMODB_ACTIONS
        if f".{method}(" in module.read_text(encoding="utf-8")
    }
    assert called, "the poller's state modules make DynamoDB calls"
    granted = {
        action
        for role, statement in _statements(output, resolver)
        if role == "PollerRole" and statement["Resource"] == "<StateTable.Arn>"
        for action in _as_list(statement["Action"])
    }
    for method in sorted(called):
        assert set(DYNAMODB_ACTIONS[method]) <= granted, method


def test_every_checkov_skip_names_its_reason() -> None:
    """`make checkov` fails on any finding; a finding we accept is skipped next to its resource, with the
    reason on one line (issue 13: before, 13 findings and none explained)."""
    skips = [
        (logical_id, skip)
        for logical_id, resource in load_template()["Resources"].items()
        if isinstance(resource, dict)  # not an Fn::ForEach loop
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips
    for logical_id, skip in skips:
        assert str(skip["id"]).startswith("CKV_"), logical_id
        comment = str(skip.get("comment", ""))
        assert len(comment) >= 20 and "\n" not in comment.strip(), f"{logical_id} {skip['id']}: {comment!r}"


# ---------------------------------------------------------------- the push path (issue 14)

STREAM_RESOURCES = {
    "EventStreamsStream",
    "EventStreamsWriterRole",
    "StreamFailureQueue",
    "StreamLogGroup",
    "StreamRole",
    "StreamFunction",
    "StreamFailureQueueAlarm",
    "StreamIteratorAgeAlarm",
}


def test_the_push_path_exists_only_with_event_streams_enabled() -> None:
    template = load_template()
    for logical_id in STREAM_RESOURCES:
        assert template["Resources"][logical_id]["Condition"] == "EventStreamsEnabled", logical_id
    parameters = template["Parameters"]
    assert parameters["EnableEventStreams"]["Default"] == "false"
    assert parameters["EventStreamsExternalId"]["NoEcho"] is True
    assert parameters["EventStreamsExternalId"]["Default"] == ""
    # The principal of Twilio's Kinesis quickstart script (TWILIO_ASSUME_ROLE_ACCOUNT), overridable.
    assert parameters["TwilioEventStreamsPrincipal"]["Default"] == "arn:aws:iam::177261743968:root"
    rule = template["Rules"]["EventStreamsNeedAnExternalId"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "EnableEventStreams"}, "true"]}
    outputs = template["Outputs"]
    assert outputs["EventStreamsSinkConfiguration"]["Condition"] == "EventStreamsEnabled"


def test_the_writer_role_trusts_twilio_only_with_the_external_id() -> None:
    parameters = {**parameter_defaults(load_template()), **EVENT_STREAMS}
    output = _sam_transform(parameters)
    resolver = Resolver(template=output, parameters=parameters, resource_names=_Placeholders())
    role = _resources(output, resolver, "AWS::IAM::Role")["EventStreamsWriterRole"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"AWS": "arn:aws:iam::177261743968:root"}
    assert trust["Condition"] == {"StringEquals": {"sts:ExternalId": EVENT_STREAMS["EventStreamsExternalId"]}}
    (policy,) = role["Policies"]
    actions = {a for st in policy["PolicyDocument"]["Statement"] for a in _as_list(st["Action"])}
    assert actions == {
        "kinesis:PutRecord",
        "kinesis:PutRecords",
        "kinesis:ListShards",
        "kinesis:DescribeLimits",
    }
    stream = _resources(output, resolver, "AWS::Kinesis::Stream")["EventStreamsStream"]
    assert stream["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
    assert stream["StreamEncryption"]["EncryptionType"] == "KMS"
    sink = resolver.resolve(output["Outputs"]["EventStreamsSinkConfiguration"]["Value"])
    assert json.loads(sink) == {"arn": "<EventStreamsStream.Arn>", "role_arn": "<EventStreamsWriterRole.Arn>"}


def test_the_event_source_mapping_is_bounded_and_reports_item_failures() -> None:
    parameters = {**parameter_defaults(load_template()), **EVENT_STREAMS}
    output = _sam_transform(parameters)
    resolver = Resolver(template=output, parameters=parameters, resource_names=_Placeholders())
    (mapping,) = (
        m
        for m in _resources(output, resolver, "AWS::Lambda::EventSourceMapping").values()
        if m["FunctionName"] == "<StreamFunction>"
    )
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["BatchSize"] == 25 and mapping["MaximumBatchingWindowInSeconds"] == 1
    assert 0 < mapping["MaximumRetryAttempts"] <= 10 and 0 < mapping["MaximumRecordAgeInSeconds"] <= 3600
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == "<StreamFailureQueue.Arn>"
    queue = _resources(output, resolver, "AWS::SQS::Queue")["StreamFailureQueue"]
    assert queue["SqsManagedSseEnabled"] is True
    env = _function_env(output, resolver, "StreamFunction")
    poller_env = _function_env(output, resolver, "PollerFunction")
    for name in (
        "COMMS_API_BASE_URL",
        "TWILIO_SECRET_ARN",
        "STATE_TABLE_NAME",
        "EVENT_BUS_NAME",
        "EVENT_SOURCE",
    ):
        assert env[name] == poller_env[name], name


def test_stream_role_grants_every_state_table_call_the_code_makes() -> None:
    parameters = {**parameter_defaults(load_template()), **EVENT_STREAMS}
    output = _sam_transform(parameters)
    resolver = Resolver(template=output, parameters=parameters, resource_names=_Placeholders())
    layer = SCHEMA_DIR.parents[1]
    modules = [
        *(layer / "stream").glob("*.py"),
        layer / "poller" / "state_store.py",
        layer / "poller" / "state_writes.py",
    ]
    called = {
        method
        for module in modules
        for method in DYNAMODB_ACTIONS
        if f".{method}(" in module.read_text("utf-8")
    }
    granted = {
        action
        for role, statement in _statements(output, resolver)
        if role == "StreamRole" and statement["Resource"] == "<StateTable.Arn>"
        for action in _as_list(statement["Action"])
    }
    # forget() (BatchWriteItem) and scans are the poller's alone.
    for method in sorted(called - {"batch_write_item", "scan"}):
        assert set(DYNAMODB_ACTIONS[method]) <= granted, method
