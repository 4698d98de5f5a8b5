"""The errors function's own environment (contract §2), on top of :class:`comms_bridge.settings.Settings`."""

from __future__ import annotations

from typing import Final

from pydantic import ConfigDict, Field

from comms_bridge.settings import EnvSettings

DEFAULT_MAX_ERRORS: Final = 1000


DEFAULT_PAGE_SIZE: Final = 1000


DEFAULT_SAFETY_MARGIN_SECONDS: Final = 10.0


DEFAULT_IDEMPOTENCY_TTL_SECONDS: Final = 7 * 24 * 3600
"""The operation's whole life in the Comms API (7-day retention); records cost next to nothing."""


class EnricherSettings(EnvSettings):
    """The errors function's own environment, on top of :class:`comms_bridge.settings.Settings`."""

    model_config = ConfigDict(frozen=True)

    max_errors: int = Field(default=DEFAULT_MAX_ERRORS, ge=1, le=100_000)
    errors_page_size: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, le=DEFAULT_PAGE_SIZE)
    idempotency_table_name: str
    errors_safety_margin_seconds: float = Field(default=DEFAULT_SAFETY_MARGIN_SECONDS, ge=0)
    slack_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    idempotency_ttl_seconds: int = Field(default=DEFAULT_IDEMPOTENCY_TTL_SECONDS, ge=60)
