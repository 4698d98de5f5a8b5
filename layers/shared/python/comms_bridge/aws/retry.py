"""The one retry loop for our own AWS retries (on top of botocore's): capped exponential backoff, a bounded
number of attempts, and never a sleep past the caller's deadline (the Lambda's remaining time)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final, Protocol


@dataclass(frozen=True)
class Backoff:
    """``max_attempts`` calls in all; before call ``n`` (n >= 2) a wait of ``base_delay * 2**(n-2)``, capped
    at ``max_delay``. ``time_left`` (seconds, None: no deadline) stops the loop early rather than sleep
    past it."""

    max_attempts: int = 6
    base_delay: float = 0.05
    max_delay: float = 2.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)
    time_left: Callable[[], float] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must not be negative")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before call number ``attempt`` (0 before the first)."""
        if attempt <= 1:
            return 0.0
        return float(min(self.max_delay, self.base_delay * 2 ** min(attempt - 2, 32)))

    def attempts(self) -> Iterator[int]:
        """Yield 1, 2, ... ``max_attempts``, waiting before each retry; stop before a wait that would end
        past the deadline."""
        for attempt in range(1, self.max_attempts + 1):
            wait = self.delay(attempt)
            if attempt > 1 and self.time_left is not None and self.time_left() <= wait:
                return
            if wait:
                self.sleep(wait)
            yield attempt

    def with_deadline(self, time_left: Callable[[], float] | None) -> Backoff:
        return Backoff(self.max_attempts, self.base_delay, self.max_delay, self.sleep, time_left)


AWS_CALL_SECONDS: Final = 1.0
"""A retry is worth its wait only if at least this long is left after it for the call itself."""


def lambda_time_left(context: LambdaContextLike | None) -> Callable[[], float] | None:
    """Seconds our own AWS retries may still wait in this invocation: Lambda's remaining time less one
    call (None without a context: a local tool without a deadline)."""
    if context is None:
        return None
    remaining = context.get_remaining_time_in_millis

    def time_left() -> float:
        return remaining() / 1000.0 - AWS_CALL_SECONDS

    return time_left


class LambdaContextLike(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...
