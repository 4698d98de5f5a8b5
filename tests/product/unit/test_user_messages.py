"""Messages a person reads when something is misconfigured or unreachable: they name the host and the cause,
the setting to change, or the variable once; never a secret or pydantic's wording."""

from __future__ import annotations

import socket

import pytest
import requests
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
)

from comms_bridge.aws.errors import describe_failure
from comms_bridge.aws.secrets import secret_region
from comms_bridge.comms.transport import transport_cause
from comms_bridge.settings import Settings, SettingsError

ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:comms-bridge/twilio-AbCdEf"


def test_the_secret_is_read_in_its_arns_region_else_in_aws_region() -> None:
    assert secret_region(ARN, {"AWS_REGION": "us-east-1"}) == "eu-west-1"
    assert secret_region("comms-bridge/twilio", {"AWS_REGION": "us-east-2", "AWS_DEFAULT_REGION": "x"}) == (
        "us-east-2"
    )
    assert secret_region("comms-bridge/twilio", {"AWS_DEFAULT_REGION": "ap-south-1"}) == "ap-south-1"
    assert secret_region("comms-bridge/twilio", {}) is None


def _refused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again: nothing listens there


def test_a_refused_connection_is_said_in_words() -> None:
    with pytest.raises(requests.ConnectionError) as caught:
        requests.get(f"http://127.0.0.1:{_refused_port()}/", timeout=5)
    assert transport_cause(caught.value) == "connection refused"
    assert transport_cause(requests.ConnectTimeout("x")) == "connect timeout"
    assert transport_cause(requests.ReadTimeout("x")) == "read timeout"
    assert transport_cause(requests.exceptions.SSLError("x")) == "TLS handshake failed"
    assert (
        transport_cause(requests.ConnectionError("NameResolutionError: no such host"))
        == "host name not resolved"
    )


def test_aws_failures_name_the_host_the_cause_or_the_setting() -> None:
    refused = EndpointConnectionError(
        endpoint_url="http://127.0.0.1:9/",
        error=ConnectionRefusedError("Failed to establish a new connection: [Errno 111] Connection refused"),
    )
    assert describe_failure(refused) == "cannot reach 127.0.0.1:9: connection refused"
    timeout = ConnectTimeoutError(endpoint_url="https://dynamodb.eu-west-1.amazonaws.com/")
    assert describe_failure(timeout) == "cannot reach dynamodb.eu-west-1.amazonaws.com: timed out"
    assert describe_failure(NoRegionError()) == "no AWS region is set: set AWS_REGION"
    assert describe_failure(NoCredentialsError()).startswith("no AWS credentials found: set AWS_PROFILE")
    denied = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}}, "GetItem")
    assert describe_failure(denied) == "AccessDeniedException: not allowed"
    try:  # as Powertools wraps it
        try:
            raise refused
        except EndpointConnectionError as exc:
            raise RuntimeError(str(exc)) from exc
    except RuntimeError as wrapped:
        assert describe_failure(wrapped) == "cannot reach 127.0.0.1:9: connection refused"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"STALL_AFTER_SECONDS": "soon"}, "STALL_AFTER_SECONDS: must be a whole number"),
        ({"STALL_AFTER_SECONDS": "0"}, "STALL_AFTER_SECONDS: must be at least 1"),
        ({"BOOTSTRAP_MODE": "all"}, "BOOTSTRAP_MODE: must be one of 'baseline' or 'emit'"),
    ],
)
def test_an_invalid_variable_is_named_once_in_plain_words(env: dict[str, str], expected: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert str(caught.value) == f"invalid environment: {expected}"
    assert "soon" not in str(caught.value), "values are never echoed (one may be a secret)"
