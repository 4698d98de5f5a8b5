"""Twilio credentials from a Secrets Manager secret (a fake Powertools provider here) or the environment."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, TransformParameterError
from botocore.exceptions import ClientError

from comms_bridge.aws.secrets import load_credentials
from comms_bridge.comms.credentials import CommsCredentials, CredentialsError, credentials_from_secret
from comms_bridge.settings import Settings, SettingsError

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
API_KEY_SID = "SK" + "fedcba9876543210" * 2
AUTH_TOKEN = "tok-9f8e7d6c5b4a39281706f5e4d3c2b1a0"
API_KEY_SECRET = "keysecret-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2"
ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:twilio-AbCdEf"
SECRETS = (AUTH_TOKEN, API_KEY_SECRET)


class FakeProvider:
    """Stands in for ``SecretsProvider``: returns a value, or raises what Powertools would raise."""

    def __init__(self, value: Any = None, error: Exception | None = None) -> None:
        self.value = value
        self.error = error
        self.calls: list[dict[str, Any]] = []

    def get(
        self,
        name: str,
        max_age: int | None = None,
        transform: Any = None,
        force_fetch: bool = False,
        **sdk_options: Any,
    ) -> Any:
        self.calls.append(
            {"name": name, "max_age": max_age, "transform": transform, "force_fetch": force_fetch}
        )
        if self.error is not None:
            raise self.error
        return self.value


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def test_auth_token_secret():
    provider = FakeProvider({"accountSid": ACCOUNT_SID, "authToken": AUTH_TOKEN, "extra": 1})
    creds = load_credentials(Settings(twilio_secret_arn=ARN), provider)
    assert creds == CommsCredentials(account_sid=ACCOUNT_SID, username=ACCOUNT_SID, password=AUTH_TOKEN)
    assert creds.kind == "auth_token"
    assert provider.calls == [{"name": ARN, "max_age": 300, "transform": "json", "force_fetch": False}]


def test_api_key_secret():
    provider = FakeProvider(
        {"accountSid": ACCOUNT_SID, "apiKeySid": API_KEY_SID, "apiKeySecret": API_KEY_SECRET}
    )
    creds = load_credentials(Settings(twilio_secret_arn=ARN), provider, max_age=60, force_fetch=True)
    assert (creds.account_sid, creds.username, creds.password) == (ACCOUNT_SID, API_KEY_SID, API_KEY_SECRET)
    assert creds.kind == "api_key"
    assert provider.calls[0]["max_age"] == 60
    assert provider.calls[0]["force_fetch"] is True


def test_api_key_wins_when_the_secret_holds_both():
    creds = credentials_from_secret(
        {
            "accountSid": ACCOUNT_SID,
            "authToken": AUTH_TOKEN,
            "apiKeySid": API_KEY_SID,
            "apiKeySecret": API_KEY_SECRET,
        }
    )
    assert creds.username == API_KEY_SID


def test_secret_arn_wins_over_environment_credentials():
    provider = FakeProvider({"accountSid": ACCOUNT_SID, "authToken": AUTH_TOKEN})
    settings = Settings(twilio_secret_arn=ARN, twilio_account_sid="AC1", twilio_auth_token="other")
    assert load_credentials(settings, provider).password == AUTH_TOKEN


def test_environment_credentials():
    settings = Settings.from_env({"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN})
    creds = load_credentials(settings)
    assert (creds.account_sid, creds.username, creds.password) == (ACCOUNT_SID, ACCOUNT_SID, AUTH_TOKEN)


@pytest.mark.parametrize("env", [{}, {"TWILIO_ACCOUNT_SID": ACCOUNT_SID}, {"TWILIO_AUTH_TOKEN": AUTH_TOKEN}])
def test_missing_environment_credentials(env):
    with pytest.raises(
        SettingsError, match="TWILIO_SECRET_ARN, or both TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"
    ) as info:
        load_credentials(Settings.from_env(env))
    assert_no_secret(str(info.value))


def test_bad_environment_account_sid_does_not_echo_the_token():
    settings = Settings.from_env({"TWILIO_ACCOUNT_SID": "not-a-sid", "TWILIO_AUTH_TOKEN": AUTH_TOKEN})
    with pytest.raises(CredentialsError, match="TWILIO_ACCOUNT_SID") as info:
        load_credentials(settings)
    assert_no_secret(str(info.value))
    assert info.value.__cause__ is None


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ({"authToken": AUTH_TOKEN}, "no 'accountSid'"),
        ({"accountSid": ACCOUNT_SID}, "needs 'authToken'"),
        ({"accountSid": ACCOUNT_SID, "apiKeySid": API_KEY_SID}, "no 'apiKeySecret'"),
        ({"accountSid": ACCOUNT_SID, "apiKeySecret": API_KEY_SECRET}, "no 'apiKeySid'"),
        ({"accountSid": ACCOUNT_SID, "authToken": ""}, "authToken must be a non-empty string"),
        ({"accountSid": ACCOUNT_SID, "authToken": 12345}, "authToken must be a non-empty string"),
        ({"accountSid": AUTH_TOKEN, "authToken": AUTH_TOKEN}, "accountSid must be an account SID"),
        (
            {"accountSid": ACCOUNT_SID, "apiKeySid": API_KEY_SECRET, "apiKeySecret": API_KEY_SECRET},
            "apiKeySid must be an API key SID",
        ),
        ([ACCOUNT_SID, AUTH_TOKEN], "must be a JSON object"),
        (AUTH_TOKEN, "must be a JSON object"),
    ],
)
def test_bad_secret_shapes_name_the_key_never_the_value(value, match):
    with pytest.raises(CredentialsError, match=match) as info:
        load_credentials(Settings(twilio_secret_arn=ARN), FakeProvider(value))
    assert_no_secret(str(info.value))
    assert_no_secret(repr(info.value))


def test_secret_that_is_not_json():
    error = TransformParameterError(
        f"Unable to transform value using 'json' transform: Expecting value: {AUTH_TOKEN}"
    )
    with pytest.raises(CredentialsError, match="not valid JSON") as info:
        load_credentials(Settings(twilio_secret_arn=ARN), FakeProvider(error=error))
    assert_no_secret(str(info.value))
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_secret_that_cannot_be_read_names_the_aws_error_code():
    client_error = ClientError(
        {"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}}, "GetSecretValue"
    )
    try:
        raise GetParameterError(str(client_error)) from client_error
    except GetParameterError as exc:
        error = exc
    with pytest.raises(CredentialsError, match="AccessDeniedException"):
        load_credentials(Settings(twilio_secret_arn=ARN), FakeProvider(error=error))


def test_credentials_repr_and_str_hide_the_secret(caplog):
    creds = CommsCredentials.from_api_key(ACCOUNT_SID, API_KEY_SID, API_KEY_SECRET)
    token_creds = CommsCredentials.from_auth_token(ACCOUNT_SID, AUTH_TOKEN)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("creds %s %r %s", creds, token_creds, [creds])
    for text in (repr(creds), str(creds), repr(token_creds), f"{token_creds}", caplog.text):
        assert_no_secret(text)
    assert "password='***'" in repr(creds)
    assert ACCOUNT_SID in repr(creds)


def test_credentials_strip_whitespace():
    creds = CommsCredentials.from_auth_token(f" {ACCOUNT_SID}\n", f"{AUTH_TOKEN}\n")
    assert (creds.username, creds.password) == (ACCOUNT_SID, AUTH_TOKEN)
