"""template.yaml's part of contract §6 (issue 13, the poller half): a customer-managed KMS key for the
secrets is decryptable by the functions that read them (poller, alerter, stream consumer) through
Secrets Manager only, MAX_CLOCK_SKEW_SECONDS reaches the functions, and ClockSkewDetected has an alarm.
Before: no such parameter (the roles could not decrypt a secret under a customer-managed key, and every run
would fail), no variable, no alarm."""

from __future__ import annotations

import re
from typing import Any

import pytest

from comms_bridge_tools.local_stack import Resolver, load_template, parameter_defaults
from tests.product.unit.test_template import (
    DEFAULTS,
    EVENT_STREAMS,
    TWILIO_SECRET,
    _alarms,
    _function_env,
    _Placeholders,
    _sam_transform,
    _statements,
)

KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def stack(**parameters: str) -> tuple[dict[str, Any], Resolver]:
    values = {**parameter_defaults(load_template()), **DEFAULTS, **parameters}
    output = _sam_transform(values)
    return output, Resolver(template=output, parameters=values, resource_names=_Placeholders())


def kms_statements(output: dict[str, Any], resolver: Resolver) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for role, statement in _statements(output, resolver):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if "kms:Decrypt" in actions and KEY in str(statement["Resource"]):
            found.setdefault(role, []).append(statement)
    return found


def test_a_secrets_key_is_decryptable_through_secrets_manager_only() -> None:
    output, resolver = stack(SecretsKmsKeyArn=KEY, SlackWebhookSecretArn=TWILIO_SECRET + "x")
    granted = kms_statements(output, resolver)
    assert set(granted) == {"PollerRole", "ErrorsRole"}
    for role, (statement,) in granted.items():
        assert statement["Action"] == "kms:Decrypt" and statement["Resource"] == KEY, role
        assert statement["Condition"] == {
            "StringEquals": {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"}
        }, role


def test_the_stream_consumer_can_decrypt_the_twilio_secrets_it_reads() -> None:
    """The Event Streams consumer reads every watched Twilio secret (to route records by account), so a
    customer-managed key must be decryptable by its role too, or every batch fails with AccessDenied."""
    output, resolver = stack(
        SecretsKmsKeyArn=KEY, **{k: v for k, v in EVENT_STREAMS.items() if k != "TwilioSecretArn"}
    )
    (statement,) = kms_statements(output, resolver)["StreamRole"]
    assert statement["Action"] == "kms:Decrypt" and statement["Resource"] == KEY
    assert statement["Condition"] == {
        "StringEquals": {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"}
    }


def test_without_a_key_nothing_is_granted() -> None:
    output, resolver = stack()
    for role, statement in _statements(output, resolver):
        assert "kms:Decrypt" not in str(statement["Action"]) or "AlertTopicKey" in str(
            statement["Resource"]
        ), role


@pytest.mark.parametrize("skew", ["3600", "600"])
def test_max_clock_skew_reaches_both_functions(skew: str) -> None:
    output, resolver = stack(MaxClockSkewSeconds=skew)
    for function in ("PollerFunction", "ErrorsFunction"):
        assert _function_env(output, resolver, function)["MAX_CLOCK_SKEW_SECONDS"] == skew


def test_clock_skew_has_an_alarm() -> None:
    output, resolver = stack()
    (alarm,) = [a for a in _alarms(output, resolver).values() if a.get("MetricName") == "ClockSkewDetected"]
    assert alarm["Namespace"] == "CommsBridge"
    assert alarm["Dimensions"] == [{"Name": "service", "Value": "poller"}]
    assert (alarm["Statistic"], alarm["Threshold"], alarm["ComparisonOperator"]) == (
        "Sum",
        1,
        "GreaterThanOrEqualToThreshold",
    )
    assert alarm["AlarmActions"] == ["<AlertTopic>"]


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://comms.twilio.com/v1", True),
        ("https://comms.dublin.ie1.twilio.com/v1", True),
        ("https://comms.example.com/v1", False),
        ("https://twilio.com.example.com/v1", False),
        ("https://eviltwilio.com/v1", False),
        ("http://comms.twilio.com/v1", False),
        ("https://user:pass@comms.twilio.com/v1", False),
    ],
)
def test_the_deploy_refuses_a_foreign_api_root(url: str, allowed: bool) -> None:
    """CloudFormation checks the parameter before anything is created (the functions check it again)."""
    pattern = load_template()["Parameters"]["CommsApiBaseUrl"]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, url)) is allowed


def test_the_dashboard_shows_clock_skew() -> None:
    body = load_template()["Resources"]["Dashboard"]["Properties"]["DashboardBody"]
    assert '"ClockSkewDetected"' in str(body)
