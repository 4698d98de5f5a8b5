"""The Twilio accounts one stack watches (docs/many-accounts.md): one Secrets Manager secret per account
(``TWILIO_SECRET_ARN``, ``TWILIO_SECRET_ARNS``, ``TWILIO_SECRET_NAMES``), or the environment's
credentials for local runs.

:class:`AccountClients` keeps one Comms client per watched secret for the container's life (bounded, least
recently used first out), so a container that serves several accounts' schedules one after the other
keeps each account's session, API clock and credentials apart: one account's 401 (a credential refresh) or
429 storm (its own retry waits) touches only that account's client. A secret the stack does not watch is
refused before anything is read or requested.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from comms_bridge.aws.secrets import (
    SecretsProviderLike,
    credentials_refresher,
    default_secret_arn,
    load_credentials,
)
from comms_bridge.comms.client import CommsClient
from comms_bridge.comms.credentials import CommsCredentials
from comms_bridge.settings import Settings, SettingsError

logger = logging.getLogger("comms_bridge.accounts")

ENVIRONMENT: Final = ""
"""The key of the environment's credentials (``TWILIO_ACCOUNT_SID``/``TWILIO_AUTH_TOKEN``): no secret."""

SUFFIX: Final = re.compile(r"[A-Za-z0-9]{6}")
"""The random suffix Secrets Manager adds to a secret's name in its ARN."""

MAX_CLIENTS: Final = 64
"""Clients a container keeps. One container serves the accounts whose schedules fire while it is warm;
past this many, the least recently used client is rebuilt on its next run (one cached secret read)."""

ClientBuilder = Callable[[CommsCredentials, Callable[[], CommsCredentials] | None], CommsClient]
"""Builds an account's client from its credentials and the refresher to call after a 401."""


class UnwatchedSecret(SettingsError):
    """The secret named (the poller's ``twilioSecretArn``) is not one this stack watches. Its ARN is not
    a secret value, so the message names it."""


class AccountClients:
    """One Comms client per watched secret, built on first use. ``account_secret`` maps an ``AC...`` SID
    to its secret, reading each watched secret once per container (the stream consumer and the alerter
    route by account)."""

    def __init__(
        self,
        settings: Settings,
        build: ClientBuilder,
        *,
        secrets_provider: SecretsProviderLike | None = None,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.settings = settings
        self.watched = settings.watched_secret_arns
        self._build = build
        self._secrets = secrets_provider
        self._max = max(1, max_clients)
        self._clients: OrderedDict[str, CommsClient] = OrderedDict()
        self._accounts: dict[str, str] | None = None

    def secret_key(self, secret_arn: str | None) -> str:
        """The watched secret ``secret_arn`` names (the only one when None), or :data:`ENVIRONMENT`."""
        if secret_arn:
            secret_arn = self._named(secret_arn)
            if secret_arn not in self.watched:
                raise UnwatchedSecret(
                    f"twilioSecretArn {secret_arn} is not one of the {len(self.watched)} secret(s) this stack"
                    " watches (TWILIO_SECRET_ARN, TWILIO_SECRET_ARNS, TWILIO_SECRET_NAMES): nothing read,"
                    " nothing requested"
                )
            return secret_arn
        return default_secret_arn(self.settings) or ENVIRONMENT

    def _named(self, secret_arn: str) -> str:
        """A named account's secret given by its full ARN (the console's, with Secrets Manager's random
        suffix) is the watched ARN without the suffix, which its schedule passes."""
        if secret_arn in self.watched:
            return secret_arn
        head, _, suffix = secret_arn.rpartition("-")
        return head if head in self.watched and SUFFIX.fullmatch(suffix) else secret_arn

    def for_secret(self, secret_arn: str | None) -> CommsClient:
        key = self.secret_key(secret_arn)
        client = self._clients.get(key)
        if client is None:
            client = self._new_client(key)
            self._clients[key] = client
            while len(self._clients) > self._max:
                _, evicted = self._clients.popitem(last=False)
                evicted.close()
        self._clients.move_to_end(key)
        return client

    def for_account(self, account_sid: str) -> CommsClient | None:
        """The client of a watched account, None for an account no watched secret holds."""
        key = self.account_secrets().get(account_sid)
        return None if key is None else self.for_secret(key or None)

    def account_secrets(self) -> dict[str, str]:
        """``AC...`` SID -> its secret (:data:`ENVIRONMENT` for the environment's credentials). A secret
        that cannot be read is logged and left out (its account is then not routed) and read again on the
        next call: one account's broken secret must not stop the others'."""
        if self._accounts is not None:
            return self._accounts
        accounts: dict[str, str] = {}
        complete = True
        for key in self.watched or (ENVIRONMENT,):
            try:
                credentials = load_credentials(self.settings, self._secrets, secret_arn=key or None)
            except SettingsError as exc:
                complete = False
                logger.error("a watched Twilio secret could not be read: %s", exc, extra={"secretArn": key})
                continue
            accounts.setdefault(credentials.account_sid, key)
        if complete:
            self._accounts = accounts
        return accounts

    def _new_client(self, key: str) -> CommsClient:
        arn = key or None
        credentials = load_credentials(self.settings, self._secrets, secret_arn=arn)
        return self._build(credentials, credentials_refresher(self.settings, self._secrets, secret_arn=arn))
