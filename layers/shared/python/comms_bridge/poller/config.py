"""The poller function's environment (contract §2 and the tuning variables in template.yaml), validated
once per container."""

from __future__ import annotations

from datetime import timedelta
from functools import cached_property

from pydantic import ConfigDict, Field, field_validator

from comms_bridge.poller.discovery import DEFAULT_CADENCE, Cadence
from comms_bridge.poller.lease import MAX_LEASE_SECONDS
from comms_bridge.settings import Settings


class PollerConfig(Settings):
    """What the poller reads: the shared :class:`Settings` plus its tuning knobs. Field names are the
    variables' (lower-cased); the properties below give the values in the types the run works with."""

    model_config = ConfigDict(frozen=True)

    lookback_seconds: int = Field(default=300, ge=0, le=86_400)
    follow_up_cadence: str = DEFAULT_CADENCE
    page_size: int = Field(default=1000, ge=1, le=1000)
    lease_seconds: int = Field(default=900, ge=30, le=MAX_LEASE_SECONDS)
    poller_safety_margin_seconds: float = Field(default=10.0, ge=0)
    max_buckets_per_run: int = Field(default=48, ge=1)
    flush_operations: int = Field(default=500, ge=10, le=10_000)
    comms_read_timeout_seconds: float = Field(default=10.0, ge=0.1)

    @field_validator("follow_up_cadence")
    @classmethod
    def _parsable_cadence(cls, value: str) -> str:
        Cadence.parse(value)  # its ValueError names the problem; pydantic adds the variable
        return value

    @cached_property
    def cadence(self) -> Cadence:
        return Cadence.parse(self.follow_up_cadence)

    @property
    def lookback(self) -> timedelta:
        return timedelta(seconds=self.lookback_seconds)

    @property
    def safety_margin_seconds(self) -> float:
        return self.poller_safety_margin_seconds

    @property
    def read_timeout_seconds(self) -> float:
        return self.comms_read_timeout_seconds
