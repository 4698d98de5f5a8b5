"""Change detection: what an observation of an Email Operation means, given what was recorded before.

Pure functions only. The caller passes the API clock (``now``) and the time it saw the version
(``observed_at``); nothing here reads a clock, a table or the network. The caller publishes the
``changes`` of a :class:`Decision` in order and stores ``new_state`` only after they were accepted, so a
crash in between re-decides the same observation against the same old state and republishes the same
event keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from comms_bridge.comms.models import EmailOperation, EmailOperationStats, OperationStatus, parse_timestamp
from comms_bridge.events.detail_types import DetailType
from comms_bridge.events.details import build_detail
from comms_bridge.events.keys import stalled_key, stats_changed_key, status_changed_key


class TrackedOperation(BaseModel):
    """What the state store keeps per operation: the last version published, as Twilio sent it."""

    model_config = ConfigDict(frozen=True)

    operation_id: str
    status: OperationStatus
    stats: EmailOperationStats
    created_at: str
    updated_at: str
    # The updatedAt value a Stalled event was already published for; a moved updatedAt re-arms the stall.
    stalled_for_updated_at: str | None = None

    @classmethod
    def from_operation(
        cls, op: EmailOperation, *, stalled_for_updated_at: str | None = None
    ) -> TrackedOperation:
        return cls(
            operation_id=op.id,
            status=op.status,
            stats=op.stats,
            created_at=op.created_at,
            updated_at=op.updated_at,
            stalled_for_updated_at=stalled_for_updated_at,
        )

    def tracked(self) -> TrackedOperation:
        """Just the tracked fields (a subclass adds bookkeeping of the store that is no part of a version)."""
        if type(self) is TrackedOperation:
            return self
        return TrackedOperation(**{name: getattr(self, name) for name in TrackedOperation.model_fields})

    @property
    def updated(self) -> datetime:
        return parse_timestamp(self.updated_at)

    @property
    def stall_reported(self) -> bool:
        """A Stalled event was already published for the current ``updatedAt``."""
        return self.stalled_for_updated_at is not None and _same_instant(
            self.stalled_for_updated_at, self.updated_at
        )

    def to_operation(self) -> EmailOperation:
        return EmailOperation(
            id=self.operation_id,
            status=self.status,
            stats=self.stats,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )


@dataclass(frozen=True)
class Change:
    """One event to publish. ``detail_type`` is a ``StrEnum``, usable wherever a ``str`` is expected."""

    detail_type: DetailType
    detail: dict[str, Any]
    event_key: str
    operation_id: str


@dataclass(frozen=True)
class Decision:
    """``changes`` in publish order; ``new_state`` is None when nothing needs to be written.

    ``stale`` marks an observation older than the recorded one (a lagging replica, a stale page): it
    produces no event and never moves the state back.
    """

    changes: list[Change] = field(default_factory=list)
    new_state: TrackedOperation | None = None
    stale: bool = False


def _unchanged(state: TrackedOperation, previous: TrackedOperation | None) -> bool:
    return previous is not None and state.tracked() == previous.tracked()


def _same_instant(left: str, right: str) -> bool:
    return left == right or parse_timestamp(left) == parse_timestamp(right)


def is_older(observed: EmailOperation, recorded: TrackedOperation) -> bool:
    """True if ``observed`` is an earlier version than ``recorded``.

    ``updatedAt`` has second precision, so two versions can share it: then a status behind the recorded
    one also marks the observation as older (statuses only move forward). Same ``updatedAt``, same status
    and other stats cannot be ordered and count as newer.
    """
    observed_at, recorded_at = observed.updated, recorded.updated
    if observed_at != recorded_at:
        return observed_at < recorded_at
    return observed.status.rank < recorded.status.rank


def _change(
    detail_type: DetailType,
    key: str,
    observed: EmailOperation,
    previous: TrackedOperation | None,
    *,
    account_sid: str,
    observed_at: datetime,
    stalled_for_seconds: int | None = None,
) -> Change:
    """One event about ``observed``; ``previous`` (None: a first sighting) gives its previous* fields."""
    detail = build_detail(
        event_key=key,
        account_sid=account_sid,
        operation_id=observed.id,
        status=observed.status,
        previous_status=None if previous is None else previous.status,
        stats=observed.stats,
        previous_stats=None if previous is None else previous.stats,
        created_at=observed.created_at,
        updated_at=observed.updated_at,
        observed_at=observed_at,
        stalled_for_seconds=stalled_for_seconds,
    )
    return Change(detail_type, detail, key, observed.id)


def _stall(
    state: TrackedOperation,
    *,
    account_sid: str,
    observed_at: datetime,
    now: datetime,
    stall_after_seconds: int,
) -> tuple[Change | None, TrackedOperation]:
    """The Stalled event due for ``state`` (if any) and the state that records it."""
    if state.status is not OperationStatus.PROCESSING or state.stall_reported:
        return None, state
    # Whole seconds, truncated: the stall is due once a full STALL_AFTER_SECONDS has passed.
    stalled_for = int((now - state.updated).total_seconds())
    if stalled_for < stall_after_seconds:
        return None, state
    key = stalled_key(account_sid, state.operation_id, state.updated_at)
    # A stall describes the current version, so previous* repeat it and the delta is zero.
    change = _change(
        DetailType.STALLED,
        key,
        state.to_operation(),
        state,
        account_sid=account_sid,
        observed_at=observed_at,
        stalled_for_seconds=stalled_for,
    )
    return change, state.model_copy(update={"stalled_for_updated_at": state.updated_at})


def decide(
    previous: TrackedOperation | None,
    observed: EmailOperation,
    *,
    account_sid: str,
    observed_at: datetime,
    now: datetime,
    stall_after_seconds: int,
    emit_first_sighting: bool,
) -> Decision:
    """Compare one observed version with the recorded state (contract §3).

    ``emit_first_sighting`` is False only on a ``baseline`` bootstrap run: such a run publishes nothing at
    all and records what it sees, so a due stall is reported by the next run. ``now`` is the API clock;
    ``now`` and ``observed_at`` are timezone-aware.
    """
    if previous is not None and previous.operation_id != observed.id:
        raise ValueError(f"state of {previous.operation_id} compared with {observed.id}")
    if previous is not None and is_older(observed, previous):
        return Decision(changes=[], new_state=None, stale=True)
    marker = None if previous is None else previous.stalled_for_updated_at
    keep_marker = marker is not None and _same_instant(marker, observed.updated_at)
    state = TrackedOperation.from_operation(observed, stalled_for_updated_at=marker if keep_marker else None)
    if not emit_first_sighting:
        return Decision(changes=[], new_state=None if _unchanged(state, previous) else state)

    changes: list[Change] = []
    kind: DetailType | None = None
    if previous is None or observed.status != previous.status:
        kind, key = DetailType.STATUS_CHANGED, status_changed_key(account_sid, observed.id, observed.status)
    elif observed.stats != previous.stats:
        kind = DetailType.STATS_CHANGED
        key = stats_changed_key(
            account_sid, observed.id, observed.status, observed.updated_at, observed.stats
        )
    if kind is not None:
        changes.append(
            _change(kind, key, observed, previous, account_sid=account_sid, observed_at=observed_at)
        )
    stall, state = _stall(
        state,
        account_sid=account_sid,
        observed_at=observed_at,
        now=now,
        stall_after_seconds=stall_after_seconds,
    )
    if stall is not None:
        changes.append(stall)
    return Decision(changes=changes, new_state=None if _unchanged(state, previous) else state)


def check_stall(
    tracked: TrackedOperation,
    *,
    account_sid: str,
    observed_at: datetime,
    now: datetime,
    stall_after_seconds: int,
) -> Decision:
    """The stall rule alone, for an operation known to be unchanged since ``tracked`` was stored.

    Gives the same decision as :func:`decide` for that unchanged observation. Not for a ``baseline``
    bootstrap run, which publishes nothing.
    """
    stall, state = _stall(
        tracked,
        account_sid=account_sid,
        observed_at=observed_at,
        now=now,
        stall_after_seconds=stall_after_seconds,
    )
    if stall is None:
        return Decision(changes=[], new_state=None)
    return Decision(changes=[stall], new_state=state.tracked())
