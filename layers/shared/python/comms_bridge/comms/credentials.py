"""Twilio credentials for the Comms API: from Secrets Manager in Lambda, from the environment locally.

Nothing here ever puts a secret value into a message or a repr: errors name the variable or the JSON
key that is wrong, never its value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final, Literal

from comms_bridge.settings import SettingsError

_ACCOUNT_SID_RE: Final = re.compile(r"AC[0-9A-Za-z]+")
_API_KEY_SID_RE: Final = re.compile(r"SK[0-9A-Za-z]+")


class CredentialsError(SettingsError):
    """The Twilio credentials are missing or malformed (the message never contains a secret)."""


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
