"""Twilio credentials read from Secrets Manager (through Powertools Parameters), or from the environment
for local runs. Messages name the variable or the AWS error code, never a secret value."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Final, Protocol

from comms_bridge.aws.errors import describe_failure
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
    secret_arn: str | None = None,
) -> CommsCredentials:
    """Credentials from ``secret_arn`` or else the one watched secret (``TWILIO_SECRET_ARN`` or a
    one-item ``TWILIO_SECRET_ARNS``; cached ``max_age`` seconds by Powertools), else from
    ``TWILIO_ACCOUNT_SID``/``TWILIO_AUTH_TOKEN``. ``force_fetch`` skips the cache (after a 401, say)."""
    arn = secret_arn or default_secret_arn(settings)
    if arn:
        return credentials_from_secret(
            _read_secret(arn, secrets_provider, max_age=max_age, force_fetch=force_fetch)
        )
    if not settings.twilio_account_sid or not settings.twilio_auth_token:
        raise SettingsError("set TWILIO_SECRET_ARN, or both TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
    try:
        return CommsCredentials.from_auth_token(settings.twilio_account_sid, settings.twilio_auth_token)
    except CredentialsError:
        raise CredentialsError(
            "TWILIO_ACCOUNT_SID must be an account SID starting with AC and TWILIO_AUTH_TOKEN non-empty"
        ) from None


def default_secret_arn(settings: Settings) -> str | None:
    """The secret read when none is named: the only watched one; None when none is watched (credentials
    from the environment). With several, the caller must name one (the poller's event does)."""
    watched = settings.watched_secret_arns
    if len(watched) > 1:
        raise SettingsError(
            f"{len(watched)} Twilio secrets are watched (TWILIO_SECRET_ARN, TWILIO_SECRET_ARNS,"
            " TWILIO_SECRET_NAMES): name the"
            " account's secret (the poller's event carries it as twilioSecretArn)"
        )
    return watched[0] if watched else None


def secret_region(secret_id: str, environ: Any = None) -> str | None:
    """Where a secret is read: the region in its ARN (the only one it can be read in), else the region the
    other clients use (``AWS_REGION``, then ``AWS_DEFAULT_REGION``). Powertools' default client would take
    only ``AWS_DEFAULT_REGION`` or the profile's region, which a local run need not have."""
    env = os.environ if environ is None else environ
    parts = secret_id.split(":")
    if len(parts) > 3 and parts[0] == "arn" and parts[3]:
        return parts[3]
    return env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None


_PROVIDERS: dict[tuple[str | None, str | None], SecretsProviderLike] = {}


def _provider_for(secret_id: str) -> SecretsProviderLike:
    """One Powertools ``SecretsProvider`` per region (and endpoint) for the container's life: its cache is
    what keeps a warm invocation from calling Secrets Manager."""
    key = (secret_region(secret_id), os.environ.get("AWS_ENDPOINT_URL"))
    if key not in _PROVIDERS:
        from aws_lambda_powertools.utilities.parameters import SecretsProvider  # noqa: PLC0415

        from comms_bridge.aws.clients import AwsClients  # noqa: PLC0415

        _PROVIDERS[key] = SecretsProvider(boto3_client=AwsClients(region=key[0]).secretsmanager())
    return _PROVIDERS[key]


def credentials_refresher(
    settings: Settings, secrets_provider: SecretsProviderLike | None = None, *, secret_arn: str | None = None
) -> Callable[[], CommsCredentials] | None:
    """What the Comms client calls after a 401 (contract §6: a rotated secret is picked up at once): the
    secret read again past the cache. None for credentials from the environment, which cannot change."""
    arn = secret_arn or default_secret_arn(settings)
    if not arn:
        return None

    def refresh() -> CommsCredentials:
        return load_credentials(settings, secrets_provider, force_fetch=True, secret_arn=arn)

    return refresh


def _read_secret(
    arn: str, provider: SecretsProviderLike | None, *, max_age: int, force_fetch: bool
) -> object:
    # Imported here so that local runs with plain environment credentials do not need boto3 set up.
    from aws_lambda_powertools.utilities.parameters.exceptions import (  # noqa: PLC0415
        GetParameterError,
        TransformParameterError,
    )

    try:
        source = provider if provider is not None else _provider_for(arn)
        return source.get(arn, max_age=max_age, transform="json", force_fetch=force_fetch)
    except TransformParameterError:
        # The decoder's message may quote part of the secret, so it is not passed on.
        raise CredentialsError("the Twilio secret (TWILIO_SECRET_ARN) is not valid JSON") from None
    except GetParameterError as exc:
        where = secret_region(arn) or "no region"
        raise CredentialsError(
            f"could not read the Twilio secret (TWILIO_SECRET_ARN) in {where}: {describe_failure(exc)}"
        ) from None
