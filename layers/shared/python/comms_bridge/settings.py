"""Validated settings read from the environment (contract §2).

Every handler builds its settings once at cold start; a bad value fails the
invocation with a message naming the variable, never with a stack trace deep in
the core.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Final, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

DEFAULT_BASE_URL: Final = "https://comms.twilio.com/v1"
LOOPBACK_NAMES: Final = frozenset({"localhost"})
TWILIO_DOMAIN: Final = "twilio.com"
SLACK_WEBHOOK_HOSTS: Final = frozenset({"hooks.slack.com", "hooks.slack-gov.com"})
DEFAULT_MAX_CLOCK_SKEW_SECONDS: Final = 3600
DEFAULT_MAX_RESPONSE_BYTES: Final = 4 * 1024 * 1024
"""Forty times a full page of 1,000 operations (about 100 KB): room for any real answer, far below the
functions' 256 MB."""


class SettingsError(ValueError):
    """An environment variable is missing or has a bad value."""


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_secure_url(
    url: str, *, what: str, hosts: Callable[[str], bool] | None = None, expected: str = ""
) -> str:
    """Allow ``https://`` to a host ``hosts`` accepts (any host when None) and a loopback host over ``http://``
    or ``https://``; refuse user info (``user:password@``). The message never echoes the URL (a webhook URL
    is a secret)."""
    parts = urlsplit(url)
    try:
        host = parts.hostname
        parts.port  # noqa: B018 - a bad port raises here, before the URL is used
    except ValueError:
        raise SettingsError(f"{what} is not a valid URL") from None
    if "@" in parts.netloc:
        raise SettingsError(f"{what} must not carry user info (user:password@), credentials live in secrets")
    if parts.scheme in ("http", "https") and is_loopback_host(host):
        return url
    if parts.scheme != "https" or not host:
        raise SettingsError(f"{what} must be an https:// URL (http:// is allowed only for a loopback host)")
    if hosts is not None and not hosts(host):
        raise SettingsError(f"{what} must be {expected} (or a loopback host for local runs)")
    return url


def is_twilio_host(host: str) -> bool:
    return host == TWILIO_DOMAIN or host.endswith("." + TWILIO_DOMAIN)


def check_comms_api_url(url: str, *, what: str) -> str:
    """The Comms API root: https to ``comms.twilio.com`` or another host under ``.twilio.com`` (Twilio's
    regional edges), loopback for local runs (contract §6)."""
    expected = "an https:// URL of comms.twilio.com or another *.twilio.com host"
    return check_secure_url(url, what=what, hosts=is_twilio_host, expected=expected)


def check_slack_webhook_url(url: str, *, what: str) -> str:
    """A Slack incoming webhook: https to ``hooks.slack.com`` or ``hooks.slack-gov.com``, loopback for local
    runs (contract §6)."""
    return check_secure_url(
        url,
        what=what,
        hosts=SLACK_WEBHOOK_HOSTS.__contains__,
        expected="an https://hooks.slack.com/... or https://hooks.slack-gov.com/... URL",
    )


class BootstrapMode(StrEnum):
    BASELINE = "baseline"
    EMIT = "emit"


class EnvSettings(BaseModel):
    """Settings read from environment variables named like the fields, upper-cased; empty means unset."""

    model_config = ConfigDict(frozen=True)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        env = os.environ if environ is None else environ
        values = {
            name: env[name.upper()] for name in cls.model_fields if env.get(name.upper()) not in (None, "")
        }
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise SettingsError(f"invalid environment: {describe_invalid_env(exc)}") from None


_PLAIN_WORDING: Final = {
    # pydantic's messages for the types settings use, in the words of an environment variable; never the
    # value (it may be a secret).
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "bool_parsing": "must be true or false",
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be more than {gt}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
    "enum": "must be one of {expected}",
    "literal_error": "must be one of {expected}",
}


def describe_invalid_env(exc: ValidationError) -> str:
    """``NAME: problem; OTHER: problem``, each variable named once. Validators often name the variable in
    their own message (they also raise outside pydantic), and pydantic prefixes a ValueError's message
    with ``Value error, ``: both are dropped so the operator reads the variable once and then the fix."""
    problems: dict[str, list[str]] = {}
    for err in exc.errors():
        name = str(err["loc"][0]).upper() if err["loc"] else "environment"
        message = _PLAIN_WORDING.get(err["type"], err["msg"]).format(**err.get("ctx", {}))
        message = message.removeprefix("Value error, ")
        if message.startswith(name) and message[len(name) : len(name) + 1] in (" ", ":"):
            message = message[len(name) :].lstrip(": ")
        if message not in problems.setdefault(name, []):
            problems[name].append(message)
    return "; ".join(f"{name}: {', '.join(messages)}" for name, messages in problems.items())


class Settings(EnvSettings):
    """What both functions read. Field names mirror the variables of contract §2."""

    model_config = ConfigDict(frozen=True)

    comms_api_base_url: str = DEFAULT_BASE_URL
    twilio_secret_arn: str | None = None
    twilio_secret_arns: str | None = None
    twilio_secret_arn_prefix: str | None = None
    twilio_secret_names: str | None = None
    twilio_account_sid: str | None = Field(default=None, repr=False)
    twilio_auth_token: str | None = Field(default=None, repr=False)
    state_table_name: str | None = None
    event_bus_name: str = "default"
    event_source: str = "twilio.comms"
    stall_after_seconds: int = Field(default=1800, ge=1)
    bootstrap_mode: BootstrapMode = BootstrapMode.BASELINE
    slack_webhook_secret_arn: str | None = None
    alert_topic_arn: str | None = None
    max_clock_skew_seconds: int = Field(default=DEFAULT_MAX_CLOCK_SKEW_SECONDS, ge=60)
    comms_max_response_bytes: int = Field(default=DEFAULT_MAX_RESPONSE_BYTES, ge=64 * 1024)

    @field_validator("comms_api_base_url")
    @classmethod
    def _comms_host(cls, value: str) -> str:
        return check_comms_api_url(value.rstrip("/"), what="COMMS_API_BASE_URL")

    @field_validator("twilio_secret_arn_prefix")
    @classmethod
    def _secret_arn_prefix(cls, value: str | None) -> str | None:
        if value and not re.fullmatch(r"arn:[a-z-]+:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:\S+", value):
            raise ValueError(
                "must be a secret ARN up to the start of the names (arn:aws:secretsmanager:<region>:"
                "<account>:secret:<TwilioSecretNamePrefix>)"
            )
        return value

    @field_validator("twilio_secret_names")
    @classmethod
    def _secret_names(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value and value.strip(", ") and not info.data.get("twilio_secret_arn_prefix"):
            raise ValueError("needs TWILIO_SECRET_ARN_PREFIX (the names are the ends of secret ARNs)")
        return value

    @property
    def watched_secret_arns(self) -> tuple[str, ...]:
        """The Twilio secrets this stack watches, one per account: ``TWILIO_SECRET_ARN`` (when set), each
        item of the comma-separated ``TWILIO_SECRET_ARNS``, then ``TWILIO_SECRET_ARN_PREFIX`` + each item of
        ``TWILIO_SECRET_NAMES`` (a secret's ARN without its random suffix, which Secrets Manager takes);
        blanks and repeats dropped."""
        items = [self.twilio_secret_arn or "", *(self.twilio_secret_arns or "").split(",")]
        prefix = (self.twilio_secret_arn_prefix or "").strip()
        if prefix:
            items += [
                prefix + name.strip() for name in (self.twilio_secret_names or "").split(",") if name.strip()
            ]
        return tuple(dict.fromkeys(item.strip() for item in items if item.strip()))

    def require_state_table(self) -> str:
        if not self.state_table_name:
            raise SettingsError("STATE_TABLE_NAME is not set")
        return self.state_table_name
