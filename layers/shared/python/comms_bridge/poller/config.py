"""The poller's tuning knobs, read from the environment once per container (see README.md, "The poller")."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Final

from comms_bridge.poller.discovery import DEFAULT_CADENCE, Cadence
from comms_bridge.settings import BootstrapMode, Settings, SettingsError

DEFAULTS: Final[Mapping[str, str]] = {
    "LOOKBACK_SECONDS": "300",
    "FOLLOW_UP_CADENCE": DEFAULT_CADENCE,
    "PAGE_SIZE": "1000",
    "LEASE_SECONDS": "900",
    "POLLER_SAFETY_MARGIN_SECONDS": "10",
    "MAX_BUCKETS_PER_RUN": "48",
    "FLUSH_OPERATIONS": "500",
    "COMMS_READ_TIMEOUT_SECONDS": "10",
}


@dataclass(frozen=True)
class PollerConfig:
    account_sid: str
    stall_after_seconds: int = 1800
    bootstrap_mode: BootstrapMode = BootstrapMode.BASELINE
    lookback: timedelta = timedelta(seconds=300)
    cadence: Cadence = field(default_factory=lambda: Cadence.parse(DEFAULT_CADENCE))
    page_size: int = 1000
    lease_seconds: int = 900
    safety_margin_seconds: float = 10.0
    max_buckets_per_run: int = 48
    flush_operations: int = 500
    read_timeout_seconds: float = 10.0

    @classmethod
    def from_env(
        cls, settings: Settings, account_sid: str, environ: Mapping[str, str] | None = None
    ) -> PollerConfig:
        env = os.environ if environ is None else environ

        def value(name: str) -> str:
            raw = env.get(name)
            return raw if raw else DEFAULTS[name]

        def integer(name: str, minimum: int, maximum: int | None = None) -> int:
            try:
                number = int(value(name))
            except ValueError:
                raise SettingsError(f"{name} must be an integer") from None
            if number < minimum or (maximum is not None and number > maximum):
                bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
                raise SettingsError(f"{name} must be {bound}")
            return number

        def number(name: str, minimum: float) -> float:
            try:
                parsed = float(value(name))
            except ValueError:
                raise SettingsError(f"{name} must be a number") from None
            if not parsed >= minimum:
                raise SettingsError(f"{name} must be >= {minimum}")
            return parsed

        try:
            cadence = Cadence.parse(value("FOLLOW_UP_CADENCE"))
        except ValueError as exc:
            raise SettingsError(f"FOLLOW_UP_CADENCE: {exc}") from None
        margin = number("POLLER_SAFETY_MARGIN_SECONDS", 0.0)
        return cls(
            account_sid=account_sid,
            stall_after_seconds=settings.stall_after_seconds,
            bootstrap_mode=settings.bootstrap_mode,
            lookback=timedelta(seconds=integer("LOOKBACK_SECONDS", 0, 86_400)),
            cadence=cadence,
            page_size=integer("PAGE_SIZE", 1, 1000),
            lease_seconds=integer("LEASE_SECONDS", 30, 3600),
            safety_margin_seconds=max(margin, 0.0),
            max_buckets_per_run=integer("MAX_BUCKETS_PER_RUN", 1),
            flush_operations=integer("FLUSH_OPERATIONS", 10, 10_000),
            read_timeout_seconds=number("COMMS_READ_TIMEOUT_SECONDS", 0.1),
        )
