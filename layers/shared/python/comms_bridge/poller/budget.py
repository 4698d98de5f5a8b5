"""A run's time: what Lambda has left, minus the margin the run keeps for saving its checkpoint."""

from __future__ import annotations

import math

from comms_bridge.poller.claims import CLAIM_MARGIN_SECONDS, UNBOUNDED_CLAIM_SECONDS, LocalClock
from comms_bridge.poller.ports import LambdaContextLike


class TimeBudget:
    """``context`` None (a test, a tool without a deadline): unlimited."""

    def __init__(
        self, context: LambdaContextLike | None, *, margin_seconds: float, local: LocalClock | None = None
    ) -> None:
        self.context = context
        self.margin_seconds = margin_seconds
        self.local = local or LocalClock()

    def remaining_seconds(self) -> float:
        if self.context is None:
            return float("inf")
        return self.context.get_remaining_time_in_millis() / 1000.0

    def left(self) -> bool:
        """Whether the run may start another step (a listing page, a fetch, a bucket listing)."""
        return self.remaining_seconds() >= self.margin_seconds

    def deadline(self) -> float:
        """Seconds a request may still take: a request that outlives it would get the Lambda killed."""
        return self.remaining_seconds() - self.margin_seconds

    def claim_until(self) -> int:
        """Epoch seconds (local clock) by which this invocation is certainly over: what a claim of the
        version protocol (:mod:`comms_bridge.poller.claims`) is held until."""
        remaining = self.remaining_seconds()
        if math.isinf(remaining):
            remaining = UNBOUNDED_CLAIM_SECONDS
        return math.ceil(self.local.time() + remaining) + CLAIM_MARGIN_SECONDS
