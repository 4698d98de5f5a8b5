"""Clocks the caller controls. The simulator reads ``now()`` for every request: it is the API's clock."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

from comms_sim.timefmt import to_datetime


class Clock(Protocol):
    def now(self) -> datetime: ...


def _aware(value: datetime | str | None) -> datetime:
    if value is None:
        return datetime.now(UTC).replace(microsecond=0)
    return to_datetime(value)


class RealClock:
    """Wall-clock time."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def __repr__(self) -> str:
        return "RealClock()"


class ManualClock:
    """Time that moves only when told to: ``advance(seconds)`` or ``set(dt)``. Thread-safe."""

    def __init__(self, start: datetime | str | None = None) -> None:
        self._now = _aware(start)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float | timedelta) -> datetime:
        delta = seconds if isinstance(seconds, timedelta) else timedelta(seconds=seconds)
        if delta < timedelta(0):
            raise ValueError("a ManualClock only moves forward; use set() to jump")
        with self._lock:
            self._now += delta
            return self._now

    def set(self, value: datetime | str) -> datetime:
        """Jump to an instant (also backwards: the simulator is stateless in time, so that is allowed)."""
        with self._lock:
            self._now = to_datetime(value)
            return self._now

    def __repr__(self) -> str:
        return f"ManualClock({self.now().isoformat()})"


class AcceleratedClock:
    """Starts at ``start`` and runs ``speed`` times faster than real time (60: a minute per second)."""

    def __init__(self, start: datetime | str | None = None, speed: float = 60.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.start = _aware(start)
        self.speed = speed
        self._origin = time.monotonic()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(time.monotonic() - self._origin) * self.speed)

    def __repr__(self) -> str:
        return f"AcceleratedClock(start={self.start.isoformat()}, speed={self.speed})"
