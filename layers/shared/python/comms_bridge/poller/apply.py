"""Applying observations: read the recorded states, decide, publish, store what was published.

This is the one place where contract §4's ordering lives, for every path that observes operations (the
poller's listings today, an Event Streams consumer fetching operations by id later):

* an operation's events go out in the order :func:`decide` gave them, round by round, and an operation
  whose earlier event was refused gets no later one;
* its new state is written only after every event of its decision was accepted, so a crash in between
  re-decides the same observation against the same old state and republishes the same ``eventKey``;
* a refused event leaves the state as it was, so the next observation decides it again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Set
from dataclasses import dataclass, field
from datetime import datetime

from comms_bridge.aws.eventbridge import OutgoingEvent
from comms_bridge.comms.models import EmailOperation
from comms_bridge.poller.change_detection import Change, Decision, TrackedOperation, check_stall, decide
from comms_bridge.poller.ports import EventSink, StateStore

logger = logging.getLogger("comms_bridge.poller.apply")


@dataclass(frozen=True)
class Observation:
    """One version of an operation as the API showed it, and when (API clock)."""

    operation: EmailOperation
    observed_at: datetime


@dataclass
class ApplyTally:
    """Running totals over every :meth:`ChangeApplier.apply` of one applier, counted as they happen (so a
    run that fails half-way still reports what it did)."""

    changes_detected: int = 0
    events_published: int = 0
    publish_failures: int = 0
    stale_observations: int = 0
    states_written: int = 0


@dataclass(frozen=True)
class Applied:
    """What one :meth:`ChangeApplier.apply` did.

    ``failed``: operations with an event EventBridge did not accept (their state is unchanged).
    ``completed``: stored states that turned terminal from a recorded non-terminal one (a completion seen
    happening, not a first sighting). ``processed``: observations that need no more work (neither stale nor
    failed), whether or not they changed anything.
    """

    failed: frozenset[str] = frozenset()
    completed: tuple[TrackedOperation, ...] = ()
    processed: tuple[EmailOperation, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.failed


@dataclass
class _Stored:
    states: list[TrackedOperation] = field(default_factory=list)
    completed: list[TrackedOperation] = field(default_factory=list)


class ChangeApplier:
    """Decides observations against the recorded state, publishes the changes, stores accepted states.

    Keeps what it learnt (states read or written, ids known to have none) across calls, so one applier
    serves one invocation. ``active_index``: the states of the active index when the caller read it (they
    need no read); None when it did not, and a terminal state then also deletes its index entry.
    ``clock``: the API clock, read after the states so that a stall is measured as late as possible.
    ``tally``: where to count (the caller's, to report it even when an apply raises).
    """

    def __init__(
        self,
        store: StateStore,
        sink: EventSink,
        *,
        account_sid: str,
        stall_after_seconds: int,
        emit_first_sighting: bool,
        clock: Callable[[], datetime],
        active_index: Mapping[str, TrackedOperation] | None = None,
        tally: ApplyTally | None = None,
    ) -> None:
        self.store = store
        self.sink = sink
        self.account_sid = account_sid
        self.stall_after_seconds = stall_after_seconds
        self.emit_first_sighting = emit_first_sighting
        self.clock = clock
        self.tally = tally if tally is not None else ApplyTally()
        self._known: dict[str, TrackedOperation] = dict(active_index or {})
        self._absent: set[str] = set()
        self._indexed: set[str] | None = None if active_index is None else set(active_index)

    def tracked(self, operation_id: str) -> TrackedOperation | None:
        """The state recorded for the operation, if this applier has read or written it."""
        return self._known.get(operation_id)

    def assume_untracked(self, operation_id: str) -> None:
        """The caller knows no state exists for it: it is not read."""
        self._absent.add(operation_id)

    def forget(self, operation_id: str) -> None:
        """Stop tracking an operation: its state and index entry are deleted."""
        self.store.forget([operation_id])
        self._known.pop(operation_id, None)

    def apply(self, observed: Mapping[str, Observation], stall_checks: Set[str] = frozenset()) -> Applied:
        """Decide ``observed`` (one version per operation, in the order given) and the stall rule for the
        tracked ``stall_checks`` not observed, publish, store. A ``StateStoreError`` while storing
        propagates: the events are out, the states are not, and the next observation republishes."""
        if not observed and not stall_checks:
            return Applied()
        self._read_missing(observed)
        decisions = self._decide(observed, stall_checks, self.clock())
        failed = self._publish({op_id: d.changes for op_id, d in decisions.items() if d.changes})
        stored = self._store_accepted(decisions, failed)
        processed = tuple(
            item.operation
            for op_id, item in observed.items()
            if op_id not in failed and not decisions[op_id].stale
        )
        return Applied(frozenset(failed), tuple(stored.completed), processed)

    def _read_missing(self, ids: Collection[str]) -> None:
        to_read = [op_id for op_id in ids if op_id not in self._known and op_id not in self._absent]
        if to_read:
            found = self.store.get_states(to_read)
            self._known.update(found)
            self._absent.update(set(to_read) - found.keys())

    def _decide(
        self, observed: Mapping[str, Observation], stall_checks: Set[str], now: datetime
    ) -> dict[str, Decision]:
        decisions: dict[str, Decision] = {}
        for op_id, item in observed.items():
            decision = decide(
                self._known.get(op_id),
                item.operation,
                account_sid=self.account_sid,
                observed_at=item.observed_at,
                now=now,
                stall_after_seconds=self.stall_after_seconds,
                emit_first_sighting=self.emit_first_sighting,
            )
            if decision.stale:
                self.tally.stale_observations += 1
            decisions[op_id] = decision
        for op_id in stall_checks - observed.keys():
            tracked = self._known.get(op_id)
            if tracked is not None:
                decisions[op_id] = check_stall(
                    tracked,
                    account_sid=self.account_sid,
                    observed_at=now,
                    now=now,
                    stall_after_seconds=self.stall_after_seconds,
                )
        return decisions

    def _publish(self, changes: dict[str, list[Change]]) -> set[str]:
        """Publish in rounds (every operation's 1st change, then 2nd, ...) so an operation whose earlier
        event failed never gets a later one out. Returns the operations with a failed event."""
        failed_ops: set[str] = set()
        self.tally.changes_detected += sum(len(c) for c in changes.values())
        rounds = max((len(c) for c in changes.values()), default=0)
        for position in range(rounds):
            owners: dict[str, str] = {}
            batch: list[OutgoingEvent] = []
            for op_id, op_changes in changes.items():
                if position < len(op_changes) and op_id not in failed_ops:
                    change = op_changes[position]
                    batch.append(OutgoingEvent(str(change.detail_type), change.detail, change.event_key))
                    owners[change.event_key] = op_id
            if batch:
                failed_ops |= self._publish_round(batch, owners)
        return failed_ops

    def _publish_round(self, batch: list[OutgoingEvent], owners: dict[str, str]) -> set[str]:
        result = self.sink.publish(batch)
        self.tally.events_published += len(result.accepted)
        failed_ops: set[str] = set()
        for failure in result.failed:
            op_id = owners[failure.event.event_key]
            failed_ops.add(op_id)
            logger.error(
                "event not accepted by EventBridge after retries; the operation's state is kept",
                extra={
                    "operationId": op_id,
                    "eventKey": failure.event.event_key,
                    "errorCode": failure.error_code,
                    "errorMessage": failure.error_message[:300],
                },
            )
        self.tally.publish_failures += len(result.failed)
        return failed_ops

    def _store_accepted(self, decisions: Mapping[str, Decision], failed: Set[str]) -> _Stored:
        stored = _Stored()
        for op_id, decision in decisions.items():
            if op_id in failed or decision.new_state is None:
                continue
            previous = self._known.get(op_id)
            stored.states.append(decision.new_state)
            if decision.new_state.status.terminal and previous is not None and not previous.status.terminal:
                stored.completed.append(decision.new_state)
        if not stored.states:
            return stored
        self.store.write_states(stored.states, indexed=self._indexed)
        self.tally.states_written += len(stored.states)
        for state in stored.states:
            self._known[state.operation_id] = state
            if self._indexed is not None:
                if state.status.terminal:
                    self._indexed.discard(state.operation_id)
                else:
                    self._indexed.add(state.operation_id)
            self._absent.discard(state.operation_id)
        return stored
