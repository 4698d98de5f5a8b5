"""The version protocol of the state table: how the poller and the stream consumer (and two overlapping
poller runs) share one operation's state without overwriting each other or publishing a change twice.

Every state item carries ``version``, a write counter, and every write is conditional on the counter the
writer read (:class:`StateWrite`): a slower writer's write is refused instead of putting an older state
back. A write that records a change with events carries a :class:`Claim`, written *before* the events
are published (claim-before-publish): it names the writer, the state the change was decided against and
the instants the decision used, so the same events can be rebuilt exactly (same ``eventKey``, same
``previous*`` and ``delta``) by whoever finishes the job. Once the events are out, the writer settles the
claim (removes it, conditional on version and owner).

A second writer that started from the same old state is refused, reads the new state, and decides its
own observation against it: two writers can never both publish a change from one old state (no
double-counted ``delta``), and a change seen by both paths is published once. A claim still in force
(``until`` in the future: its writer may still be publishing) makes everyone else wait; a claim past its
``until`` belongs to a writer that died, and the next reader publishes its events (the same keys) and
settles it before going on. ``until`` is the claimer's own deadline plus a margin on the local clock, not
the API clock: it is about the lifetime of a process, which the API's clock knows nothing of.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from time import sleep as _sleep
from time import time as _time
from typing import Final

from pydantic import BaseModel, ConfigDict

from comms_bridge.comms.models import format_timestamp, parse_timestamp
from comms_bridge.poller.change_detection import Change, TrackedOperation, decide

CLAIM_MARGIN_SECONDS: Final = 30
"""Added to the claimer's deadline: clocks of two Lambda hosts agree within this (NTP keeps them within
milliseconds); a claim is taken over only once its writer cannot be alive any more."""
UNBOUNDED_CLAIM_SECONDS: Final = 900
"""A writer without a deadline (a tool run without a time budget) claims for Lambda's longest timeout."""


@dataclass(frozen=True)
class LocalClock:
    """The machine's clock, used for claims only (never for what the API's clock decides): ``time`` in
    epoch seconds and ``sleep``. Tests pass one they move by hand."""

    time: Callable[[], float] = field(default=_time)
    sleep: Callable[[float], None] = field(default=_sleep)


class Claim(BaseModel):
    """A writer's promise to publish the events of the change its write recorded.

    ``previous``: the state the change was decided against (None: a first sighting); ``observed_at`` and
    ``now``: the instants the decision used (API clock). With the stored state these give the events back
    exactly (:func:`claimed_changes`). ``until``: epoch seconds, local clock, past which the writer is
    known to be gone.
    """

    model_config = ConfigDict(frozen=True)

    owner: str
    until: int
    previous: TrackedOperation | None
    observed_at: str
    now: str

    def in_force(self, wall_now: float) -> bool:
        return wall_now < self.until


class StoredState(TrackedOperation):
    """A state as the table holds it: the tracked fields, the item's write counter (0: no item, or one
    written before items had a counter) and the claim of a writer still publishing, if any. The active
    index holds copies with the counter and never a claim."""

    version: int = 0
    claim: Claim | None = None

    @classmethod
    def of(cls, state: TrackedOperation, *, version: int, claim: Claim | None = None) -> StoredState:
        return cls(**state.tracked().model_dump(), version=version, claim=claim)


class IndexAction(StrEnum):
    PUT = "put"  # the operation is (still) active: its index copy is written with the state
    DELETE = "delete"  # it turned terminal and had an index entry
    NONE = "none"  # terminal and known to have no index entry


@dataclass(frozen=True)
class StateWrite:
    """Store ``state`` as version ``expected + 1`` if the item is still at ``expected`` and unclaimed.
    ``claim``: the events this write promises to publish (None: a write without events). ``index``: what
    becomes of the operation's active index entry, in the same transaction for a write without a claim,
    and when the claim is settled for one with (until then the entry keeps the version before, so the
    poller, comparing listings with the index, still sees a change there and looks at the state item)."""

    state: TrackedOperation
    expected: int
    claim: Claim | None
    index: IndexAction

    @property
    def operation_id(self) -> str:
        return self.state.operation_id


@dataclass(frozen=True)
class Settle:
    """End ``owner``'s claim on the item at ``version``: remove it (its events are out) and bring the
    active index entry up to ``state`` (``index``), or with ``release`` let it lapse at once and leave the
    index as it was (the events are not out: the next reader publishes them)."""

    operation_id: str
    version: int
    owner: str
    release: bool = False
    state: TrackedOperation | None = None
    index: IndexAction = IndexAction.NONE


def new_claim(
    owner: str, until: int, previous: TrackedOperation | None, *, observed_at: datetime, now: datetime
) -> Claim:
    return Claim(
        owner=owner,
        until=until,
        previous=None if previous is None else previous.tracked(),
        observed_at=format_timestamp(observed_at),
        now=format_timestamp(now),
    )


def claimed_changes(stored: StoredState, *, account_sid: str, stall_after_seconds: int) -> list[Change]:
    """The events ``stored.claim`` promised, rebuilt: the decision of the claimed state against the state
    it was decided against, at the instants the claimer used. The same function as the claimer's, so the
    same events."""
    claim = stored.claim
    if claim is None:
        return []
    decision = decide(
        claim.previous,
        stored.to_operation(),
        account_sid=account_sid,
        observed_at=parse_timestamp(claim.observed_at),
        now=parse_timestamp(claim.now),
        stall_after_seconds=stall_after_seconds,
        emit_first_sighting=True,
    )
    return decision.changes
