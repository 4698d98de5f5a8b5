"""The errors function's own environment (contract §2), on top of :class:`comms_bridge.settings.Settings`."""

from __future__ import annotations

import re
from functools import cached_property
from typing import Final

from pydantic import ConfigDict, Field, field_validator

from comms_bridge.settings import EnvSettings

DEFAULT_MAX_ERRORS: Final = 1000


DEFAULT_PAGE_SIZE: Final = 1000


DEFAULT_SAFETY_MARGIN_SECONDS: Final = 10.0


DEFAULT_IDEMPOTENCY_TTL_SECONDS: Final = 7 * 24 * 3600
"""The operation's whole life in the Comms API (7-day retention); records cost next to nothing."""

DEFAULT_MAX_ALERTS_PER_OPERATION_PER_HOUR: Final = 3
"""A bad send alerts when it completes and again when more of its emails fail later; three an hour lets
that through and stops a flood of triggers (forged, or a bug) from paging anyone a hundred times."""


_SLACK_MAP_ITEM: Final = re.compile(
    r"(AC[0-9a-fA-F]{32})=(arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+)"
)


def parse_slack_map(value: str) -> dict[str, str]:
    """``AC...=arn,AC...=arn`` (blanks around items ignored) as accountSid -> Slack webhook secret ARN."""
    mapping: dict[str, str] = {}
    for position, item in enumerate(value.split(","), start=1):
        if not item.strip():
            continue
        match = _SLACK_MAP_ITEM.fullmatch(item.strip())
        if match is None:
            raise ValueError(f"item {position} is not AC<32 hex>=<Secrets Manager secret ARN>")
        if match.group(1) in mapping:
            raise ValueError(f"item {position} names account {match.group(1)} a second time")
        mapping[match.group(1)] = match.group(2)
    return mapping


class EnricherSettings(EnvSettings):
    """The errors function's own environment, on top of :class:`comms_bridge.settings.Settings`."""

    model_config = ConfigDict(frozen=True)

    max_errors: int = Field(default=DEFAULT_MAX_ERRORS, ge=1, le=100_000)
    errors_page_size: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, le=DEFAULT_PAGE_SIZE)
    idempotency_table_name: str
    errors_safety_margin_seconds: float = Field(default=DEFAULT_SAFETY_MARGIN_SECONDS, ge=0)
    slack_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    idempotency_ttl_seconds: int = Field(default=DEFAULT_IDEMPOTENCY_TTL_SECONDS, ge=60)
    # Contract §2: the rule's two thresholds, read by the alerter to confirm a failure trigger.
    failed_count_threshold: float = Field(default=10, ge=0)
    failed_rate_threshold: float = Field(default=0.05, ge=0, le=1)
    max_alerts_per_operation_per_hour: int = Field(
        default=DEFAULT_MAX_ALERTS_PER_OPERATION_PER_HOUR, ge=1, le=1000
    )
    # Per-account Slack channels (docs/many-accounts.md); an account not named uses SLACK_WEBHOOK_SECRET_ARN.
    slack_webhook_secret_arns_by_account: str = ""

    @field_validator("slack_webhook_secret_arns_by_account")
    @classmethod
    def _slack_map(cls, value: str) -> str:
        parse_slack_map(value)
        return value

    @cached_property
    def slack_webhooks_by_account(self) -> dict[str, str]:
        return parse_slack_map(self.slack_webhook_secret_arns_by_account)
