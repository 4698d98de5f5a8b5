"""Twilio credentials read from Secrets Manager (through Powertools Parameters), or from the environment
for local runs. Messages name the variable or the AWS error code, never a secret value."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Protocol

from comms_bridge.aws.errors import error_code
from comms_bridge.comms.credentials import CommsCredentials, CredentialsError, credentials_from_secret
from comms_bridge.settings import Settings, SettingsError

DEFAULT_SECRET_MAX_AGE_SECONDS: Final = 300


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


def credentials_refresher(
    settings: Settings, secrets_provider: SecretsProviderLike | None = None
) -> Callable[[], CommsCredentials] | None:
    """What the Comms client calls after a 401 (contract §6: a rotated secret is picked up at once): the
    secret read again past the cache. None for credentials from the environment, which cannot change."""
    if not settings.twilio_secret_arn:
        return None

    def refresh() -> CommsCredentials:
        return load_credentials(settings, secrets_provider, force_fetch=True)

    return refresh


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
            f"could not read the Twilio secret (TWILIO_SECRET_ARN): {error_code(exc)}"
        ) from None
