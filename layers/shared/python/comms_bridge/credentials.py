"""Twilio credentials for the Comms API: from Secrets Manager in Lambda, from the environment locally.

Nothing here ever puts a secret value into a message or a repr: errors name the variable or the JSON
key that is wrong, never its value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

from comms_bridge.settings import Settings, SettingsError

DEFAULT_SECRET_MAX_AGE_SECONDS: Final = 300
_ACCOUNT_SID_RE: Final = re.compile(r"AC[0-9A-Za-z]+")
_API_KEY_SID_RE: Final = re.compile(r"SK[0-9A-Za-z]+")


class CredentialsError(SettingsError):
    """The Twilio credentials are missing or malformed (the message never contains a secret)."""


class SecretsProviderLike(Protocol):
    """What ``load_credentials`` needs of a Powertools ``SecretsProvider`` (tests pass a fake)."""

    def get(
        self,
        name: str,
        max_age: int | None = None,
        transform: Any = None,
        force_fetch: bool = False,
        **sdk_options: Any,
    ) -> Any: ...


@dataclass(frozen=True)
class CommsCredentials:
    """HTTP Basic credentials. ``username``/``password`` are accountSid/authToken or apiKeySid/apiKeySecret;
    ``account_sid`` is always the ``AC...`` account."""

    account_sid: str
    username: str
    password: str = field(repr=False)

    @property
    def kind(self) -> Literal["auth_token", "api_key"]:
        return "api_key" if self.username.startswith("SK") else "auth_token"

    def __repr__(self) -> str:
        return (
            f"CommsCredentials(account_sid={self.account_sid!r}, username={self.username!r}, password='***')"
        )

    __str__ = __repr__

    @classmethod
    def from_auth_token(cls, account_sid: str, auth_token: str) -> CommsCredentials:
        sid = _checked(account_sid, _ACCOUNT_SID_RE, "accountSid", "an account SID starting with AC")
        return cls(account_sid=sid, username=sid, password=_secret(auth_token, "authToken"))

    @classmethod
    def from_api_key(cls, account_sid: str, api_key_sid: str, api_key_secret: str) -> CommsCredentials:
        sid = _checked(account_sid, _ACCOUNT_SID_RE, "accountSid", "an account SID starting with AC")
        key = _checked(api_key_sid, _API_KEY_SID_RE, "apiKeySid", "an API key SID starting with SK")
        return cls(account_sid=sid, username=key, password=_secret(api_key_secret, "apiKeySecret"))


def _checked(value: object, pattern: re.Pattern[str], name: str, expected: str) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value.strip()) is None:
        raise CredentialsError(f"Twilio credential {name} must be {expected}")
    return value.strip()


def _secret(value: object, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise CredentialsError(f"Twilio credential {name} must be a non-empty string")
    return value.strip()


def credentials_from_secret(value: object) -> CommsCredentials:
    """Read ``{"accountSid","authToken"}`` or ``{"accountSid","apiKeySid","apiKeySecret"}``."""
    if not isinstance(value, dict):
        raise CredentialsError("the Twilio secret must be a JSON object")
    if "accountSid" not in value:
        raise CredentialsError("the Twilio secret has no 'accountSid'")
    # An API key is scoped and revocable, so it wins when the secret holds both kinds.
    if "apiKeySid" in value or "apiKeySecret" in value:
        missing = [key for key in ("apiKeySid", "apiKeySecret") if key not in value]
        if missing:
            raise CredentialsError(f"the Twilio secret has no {', '.join(repr(k) for k in missing)}")
        return CommsCredentials.from_api_key(value["accountSid"], value["apiKeySid"], value["apiKeySecret"])
    if "authToken" not in value:
        raise CredentialsError(
            "the Twilio secret needs 'authToken', or 'apiKeySid' and 'apiKeySecret', next to 'accountSid'"
        )
    return CommsCredentials.from_auth_token(value["accountSid"], value["authToken"])


def load_credentials(
    settings: Settings,
    secrets_provider: SecretsProviderLike | None = None,
    *,
    max_age: int = DEFAULT_SECRET_MAX_AGE_SECONDS,
    force_fetch: bool = False,
) -> CommsCredentials:
    """Credentials from ``TWILIO_SECRET_ARN`` (cached ``max_age`` seconds by Powertools), else from
    ``TWILIO_ACCOUNT_SID``/``TWILIO_AUTH_TOKEN``. ``force_fetch`` skips the cache (after a 401, say)."""
    if settings.twilio_secret_arn:
        return credentials_from_secret(
            _read_secret(
                settings.twilio_secret_arn, secrets_provider, max_age=max_age, force_fetch=force_fetch
            )
        )
    if not settings.twilio_account_sid or not settings.twilio_auth_token:
        raise SettingsError("set TWILIO_SECRET_ARN, or both TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
    try:
        return CommsCredentials.from_auth_token(settings.twilio_account_sid, settings.twilio_auth_token)
    except CredentialsError:
        raise CredentialsError(
            "TWILIO_ACCOUNT_SID must be an account SID starting with AC and TWILIO_AUTH_TOKEN non-empty"
        ) from None


def _read_secret(
    arn: str, provider: SecretsProviderLike | None, *, max_age: int, force_fetch: bool
) -> object:
    # Imported here so that local runs with plain environment credentials do not need boto3 set up.
    from aws_lambda_powertools.utilities.parameters import get_secret  # noqa: PLC0415
    from aws_lambda_powertools.utilities.parameters.exceptions import (  # noqa: PLC0415
        GetParameterError,
        TransformParameterError,
    )

    try:
        if provider is not None:
            return provider.get(arn, max_age=max_age, transform="json", force_fetch=force_fetch)
        return get_secret(arn, transform="json", max_age=max_age, force_fetch=force_fetch)
    except TransformParameterError:
        # The decoder's message may quote part of the secret, so it is not passed on.
        raise CredentialsError("the Twilio secret (TWILIO_SECRET_ARN) is not valid JSON") from None
    except GetParameterError as exc:
        raise CredentialsError(
            f"could not read the Twilio secret (TWILIO_SECRET_ARN): {aws_error_code(exc)}"
        ) from None


def aws_error_code(exc: Exception) -> str:
    """The AWS error code behind a failed Powertools fetch (``GetParameterError``), which says why
    (AccessDenied, ResourceNotFound) without carrying any secret material."""
    cause = exc.__cause__ or exc.__context__
    response = getattr(cause, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if isinstance(code, str):
            return code
    return type(cause or exc).__name__
