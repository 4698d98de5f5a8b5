"""How one operation evolves, computed lazily: the state at any instant from a fixed plan.

Nothing ticks. ``state_at(t)`` maps ``t`` (seconds since the scenario's anchor) to a
*version index*, and the version index to a status and counters with integer arithmetic,
so 100,000 operations cost nothing until someone asks for them, and the same question
always gets the same answer (also when the clock is set backwards).

Two kinds of plan:

* ``SendPlan`` -- parametric: created, maybe scheduled for later, processed in ticks of
  ``step`` seconds over ``duration``, maybe canceled, maybe stalled, then late deliveries
  and opens at ``late`` offsets after completion.
* ``KeyframeTimeline`` -- explicit versions, output verbatim (used for the documentation
  fixtures and for hand-written oddities).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol

SCHEDULED: Final = "SCHEDULED"
PROCESSING: Final = "PROCESSING"
COMPLETED: Final = "COMPLETED"
CANCELED: Final = "CANCELED"
STATUSES: Final = (SCHEDULED, PROCESSING, COMPLETED, CANCELED)

# The order of the documentation examples.
STAT_NAMES: Final = (
    "total",
    "recipients",
    "attempts",
    "queued",
    "sent",
    "scheduled",
    "delivered",
    "opened",
    "undelivered",
    "failed",
    "canceled",
)

Counting = Literal["cumulative", "bucket"]
COUNTINGS: Final = ("cumulative", "bucket")

CANCEL_KEY: Final = -1


@dataclass(frozen=True, slots=True)
class OpState:
    """One version of an operation. ``updated`` is in scenario seconds (since the anchor)."""

    status: str
    stats: Mapping[str, int]
    updated: int


@dataclass(frozen=True, slots=True)
class Version:
    """A version in scenario seconds: ``time`` is when it became visible (= its ``updatedAt``)."""

    time: int
    status: str
    stats: Mapping[str, int]


class Timeline(Protocol):
    id: str
    name: str
    created: int
    error_weights: Mapping[int, int] | None

    def key_at(self, t: int) -> int | None:
        """A value that changes exactly when the visible state may change; None before creation."""

    def state_for_key(self, key: int) -> OpState: ...

    def status_at(self, t: int) -> str | None: ...

    def versions(self) -> list[Version]:
        """Every distinct version, oldest first (finite: a stall forever ends the list)."""

    def final_time(self) -> int:
        """No version appears after this (an upper bound, cheap: ground-truth queries skip settled ones)."""


def _stats(values: Sequence[int], counting: Counting) -> dict[str, int]:
    total, recipients, attempts, queued, sent, scheduled, delivered, opened, undelivered, failed, canceled = (
        values
    )
    if counting == "bucket":
        # One email, one bucket: "sent" means sent without a result yet, "delivered" delivered but unopened.
        sent = sent - delivered - undelivered
        delivered = delivered - opened
    return {
        "total": total,
        "recipients": recipients,
        "attempts": attempts,
        "queued": queued,
        "sent": sent,
        "scheduled": scheduled,
        "delivered": delivered,
        "opened": opened,
        "undelivered": undelivered,
        "failed": failed,
        "canceled": canceled,
    }


class SendPlan:
    """A parametric send. All times are scenario seconds; counters are the final (cumulative) totals."""

    __slots__ = (
        "_base",
        "_end",
        "_n",
        "cancel",
        "counting",
        "created",
        "duration",
        "early_opened",
        "error_weights",
        "failed",
        "id",
        "late",
        "late_delivered",
        "name",
        "on_time_delivered",
        "opened",
        "recipients",
        "retries",
        "stall_at",
        "stall_for",
        "start",
        "step",
        "total",
        "undelivered",
    )

    def __init__(
        self,
        *,
        id: str,
        name: str = "",
        created: int,
        total: int,
        start: int | None = None,
        duration: int = 60,
        step: int = 10,
        recipients: int | None = None,
        failed: int = 0,
        undelivered: int = 0,
        late_delivered: int = 0,
        opened: int = 0,
        early_open_fraction: float = 0.3,
        late: Sequence[int] = (),
        cancel: int | None = None,
        stall_at: int | None = None,
        stall_for: int | None = None,
        retries: int = 0,
        error_weights: Mapping[int, int] | None = None,
        counting: Counting = "cumulative",
    ) -> None:
        self.id = id
        self.name = name
        self.created = created
        self.total = total
        self.start = created if start is None else start
        self.duration = duration
        self.step = step
        self.recipients = total if recipients is None else recipients
        self.failed = failed
        self.undelivered = undelivered
        self.late_delivered = late_delivered
        self.opened = opened
        self.late = tuple(sorted(late))
        self.cancel = cancel
        self.stall_at = stall_at
        self.stall_for = stall_for
        self.retries = retries
        self.error_weights = error_weights
        self.counting: Counting = counting
        self._validate()
        self.on_time_delivered = total - failed - undelivered - late_delivered
        self.early_opened = min(round(opened * early_open_fraction), self.on_time_delivered)
        self._n = -(-duration // step)  # processing ticks: elapsed 0, step, 2*step, ... < duration
        self._end = self.start + duration
        self._base = 1 if self.start > created else 0

    def _validate(self) -> None:
        problems = []
        if (
            self.total < 0
            or min(self.failed, self.undelivered, self.late_delivered, self.opened, self.retries) < 0
        ):
            problems.append("counters must be >= 0")
        if self.failed + self.undelivered + self.late_delivered > self.total:
            problems.append("failed + undelivered + late_delivered exceeds total")
        if self.opened > self.total - self.failed - self.undelivered:
            problems.append("opened exceeds the delivered emails")
        if self.start < self.created:
            problems.append("start is before created")
        if self.duration <= 0 or self.step <= 0:
            problems.append("duration and step must be > 0")
        if any(offset <= 0 for offset in self.late):
            problems.append("late offsets must be > 0 (after completion)")
        if self.cancel is not None and self.cancel < self.created:
            problems.append("cancel is before created")
        if self.stall_at is not None and not self.start <= self.stall_at < self.start + self.duration:
            problems.append("stall_at must fall inside processing [start, start + duration)")
        if self.stall_for is not None and (self.stall_at is None or self.stall_for <= 0):
            problems.append("stall_for needs stall_at and must be > 0")
        if self.cancel is not None and self._virtual(self.cancel) >= self.start + self.duration:
            problems.append("cancel comes after completion")
        if problems:
            raise ValueError(f"operation {self.name or self.id}: " + "; ".join(problems))

    # -- time -------------------------------------------------------------------------------------

    def _virtual(self, t: int) -> int:
        """Plan time: real time with the stall cut out (frozen at ``stall_at`` while stalled)."""
        if self.stall_at is None or t < self.stall_at:
            return t
        if self.stall_for is None or t < self.stall_at + self.stall_for:
            return self.stall_at
        return t - self.stall_for

    def _real(self, tv: int) -> int | None:
        """When a plan instant happens in real time; None if a stall forever means never."""
        if self.stall_at is None or tv <= self.stall_at:
            return tv
        return None if self.stall_for is None else tv + self.stall_for

    def _index_time(self, index: int) -> int:
        if index < self._base:
            return self.created
        k = index - self._base
        if k < self._n:
            return self.start + k * self.step
        j = k - self._n
        return self._end if j == 0 else self._end + self.late[j - 1]

    def _index_at_virtual(self, tv: int) -> int:
        if tv < self.start:
            return 0
        if tv < self._end:
            return self._base + (tv - self.start) // self.step
        return self._base + self._n + bisect_right(self.late, tv - self._end)

    # -- state ------------------------------------------------------------------------------------

    def _values(self, index: int) -> tuple[str, tuple[int, ...]]:
        total = self.total
        if index < self._base:
            return SCHEDULED, (total, self.recipients, 0, 0, 0, total, 0, 0, 0, 0, 0)
        k = index - self._base
        if k < self._n:
            elapsed = min(k * self.step, self.duration)
            d = self.duration
            processed = total * elapsed // d
            failed = self.failed * elapsed // d
            return PROCESSING, (
                total,
                self.recipients,
                processed + self.retries * elapsed // d,
                total - processed,
                processed - failed,
                0,
                self.on_time_delivered * elapsed // d,
                self.early_opened * elapsed // d,
                self.undelivered * elapsed // d,
                failed,
                0,
            )
        j = k - self._n
        m = len(self.late)
        late_delivered = self.late_delivered * j // m if m else self.late_delivered
        late_opened = (self.opened - self.early_opened) * j // m if m else self.opened - self.early_opened
        delivered = self.on_time_delivered + late_delivered
        return COMPLETED, (
            total,
            self.recipients,
            total + self.retries,
            0,
            total - self.failed,
            0,
            delivered,
            min(self.early_opened + late_opened, delivered),
            self.undelivered,
            self.failed,
            0,
        )

    def _canceled_values(self) -> tuple[str, tuple[int, ...]]:
        assert self.cancel is not None
        status, values = self._values(self._index_at_virtual(self._virtual(self.cancel)))
        v = list(values)
        if status == SCHEDULED:
            v[5], v[10] = 0, self.total
        else:
            v[3], v[10] = 0, v[3]  # whatever was still queued is canceled
        return CANCELED, tuple(v)

    def key_at(self, t: int) -> int | None:
        if t < self.created:
            return None
        if self.cancel is not None and t >= self.cancel:
            return CANCEL_KEY
        return self._index_at_virtual(self._virtual(t))

    def status_at(self, t: int) -> str | None:
        if t < self.created:
            return None
        if self.cancel is not None and t >= self.cancel:
            return CANCELED
        tv = self._virtual(t)
        if tv < self.start:
            return SCHEDULED
        return PROCESSING if tv < self._end else COMPLETED

    def state_for_key(self, key: int) -> OpState:
        if key == CANCEL_KEY:
            assert self.cancel is not None
            status, values = self._canceled_values()
            return OpState(status, _stats(values, self.counting), self.cancel)
        current = self._values(key)
        index = key
        # updatedAt is when the visible state last changed: skip back over ticks that changed nothing.
        while index > 0 and self._values(index - 1) == current:
            index -= 1
        updated = self._real(self._index_time(index))
        assert updated is not None
        return OpState(current[0], _stats(current[1], self.counting), updated)

    def versions(self) -> list[Version]:
        found: list[Version] = []
        previous: tuple[str, tuple[int, ...]] | None = None
        for index in range(self._base + self._n + len(self.late) + 1):
            at = self._real(self._index_time(index))
            if at is None or (self.cancel is not None and at >= self.cancel):
                break
            current = self._values(index)
            if current != previous:
                found.append(Version(at, current[0], _stats(current[1], self.counting)))
                previous = current
        if self.cancel is not None:
            status, values = self._canceled_values()
            found.append(Version(self.cancel, status, _stats(values, self.counting)))
        return found

    def final_time(self) -> int:
        if self.cancel is not None:
            return self.cancel
        last = self._real(self._end + (self.late[-1] if self.late else 0))
        return last if last is not None else self._real(self.stall_at or 0) or 0

    def __repr__(self) -> str:
        return f"SendPlan(id={self.id!r}, name={self.name!r})"


@dataclass(frozen=True, slots=True)
class Keyframe:
    at: int
    status: str
    stats: Mapping[str, int]
    updated: int | None = None  # an explicit updatedAt (documentation fixtures); default: ``at``


class KeyframeTimeline:
    """Explicit versions. Their ``stats`` are output verbatim (also partial ones, as in one doc example)."""

    __slots__ = ("_ats", "created", "error_weights", "frames", "id", "name")

    def __init__(
        self,
        *,
        id: str,
        name: str = "",
        created: int,
        frames: Sequence[Keyframe],
        error_weights: Mapping[int, int] | None = None,
    ) -> None:
        if not frames:
            raise ValueError(f"operation {name or id}: no versions")
        ats = [frame.at for frame in frames]
        if ats != sorted(ats) or len(set(ats)) != len(ats):
            raise ValueError(f"operation {name or id}: version times must increase")
        if ats[0] != created:
            raise ValueError(f"operation {name or id}: the first version must be at its creation")
        for frame in frames:
            if frame.status not in STATUSES:
                raise ValueError(f"operation {name or id}: unknown status {frame.status!r}")
        self.id = id
        self.name = name
        self.created = created
        self.frames = tuple(frames)
        self.error_weights = error_weights
        self._ats = ats

    def key_at(self, t: int) -> int | None:
        return None if t < self.created else bisect_right(self._ats, t) - 1

    def status_at(self, t: int) -> str | None:
        key = self.key_at(t)
        return None if key is None else self.frames[key].status

    def state_for_key(self, key: int) -> OpState:
        frame = self.frames[key]
        return OpState(frame.status, frame.stats, frame.at if frame.updated is None else frame.updated)

    def versions(self) -> list[Version]:
        return [Version(frame.at, frame.status, frame.stats) for frame in self.frames]

    def final_time(self) -> int:
        return self.frames[-1].at

    def __repr__(self) -> str:
        return f"KeyframeTimeline(id={self.id!r}, name={self.name!r})"


def state_at(timeline: Timeline, t: int) -> OpState | None:
    key = timeline.key_at(t)
    return None if key is None else timeline.state_for_key(key)
