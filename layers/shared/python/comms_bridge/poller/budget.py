"""A run's time: what Lambda has left, minus the margin the run keeps for saving its checkpoint."""

from __future__ import annotations

from comms_bridge.poller.ports import LambdaContextLike


class TimeBudget:
    """``context`` None (a test, a tool without a deadline): unlimited."""

    def __init__(self, context: LambdaContextLike | None, *, margin_seconds: float) -> None:
        self.context = context
        self.margin_seconds = margin_seconds

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
