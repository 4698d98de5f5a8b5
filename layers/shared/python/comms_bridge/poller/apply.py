"""Applying observations: read the recorded states, decide, claim, publish, settle.

This is the one place where contract §4's ordering and the version protocol of
:mod:`comms_bridge.poller.claims` live, for every path that observes operations (the poller's listings,
the Event Streams consumer fetching operations by id, two poller runs that overlap):

* an operation's new state is written *before* its events, conditional on the version this applier read
  and carrying a claim that says which events it owes; a refused write means another writer was first:
  the state is read again and the observation decided against it (stale, or a smaller change), so two
  writers never both publish a change from one old state;
* a claim still in force makes this applier wait for its writer, a lapsed one is finished first (its
  events published again under the same keys, then settled);
* an operation's events go out in the order :func:`decide` gave them, round by round, and an operation
  whose earlier event was refused gets no later one; once all are out the claim is settled, otherwise it
  is released so that the next reader publishes them.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable, Collection, Mapping, Set
from dataclasses import dataclass, field
from datetime import datetime

from comms_bridge.aws.eventbridge import OutgoingEvent
from comms_bridge.aws.retry import Backoff
from comms_bridge.comms.models import EmailOperation
from comms_bridge.poller.change_detection import Change, Decision, TrackedOperation, check_stall, decide
from comms_bridge.poller.claims import (
    CLAIM_MARGIN_SECONDS,
    UNBOUNDED_CLAIM_SECONDS,
    IndexAction,
    LocalClock,
    Settle,
    StateWrite,
    StoredState,
    claimed_changes,
    new_claim,
)
from comms_bridge.poller.ports import EventSink, StateStore

logger = logging.getLogger("comms_bridge.poller.apply")

DEFAULT_WAITS = Backoff(max_attempts=5, base_delay=0.2, max_delay=1.0)
"""How long an applier waits for another writer's claim in force (0.2 + 0.4 + 0.8 + 1.0 s), reading the
state again between waits; still claimed after that, the operation is left for a later observation."""


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
    write_conflicts: int = 0  # writes refused because another writer stored a newer version first
    claims_recovered: int = 0  # lapsed claims of writers that died, finished by this applier
    deferred: int = 0  # operations left for later: another writer's claim stayed in force


@dataclass(frozen=True)
class Applied:
    """What one :meth:`ChangeApplier.apply` did.

    ``failed``: operations with an event EventBridge did not accept, or left because another writer held
    them (``deferred``, a subset); their events are owed by a claim or by the next observation.
    ``completed``: stored states that turned terminal from a recorded non-terminal one (a completion seen
    happening, not a first sighting). ``processed``: observations that need no more work (neither stale nor
    failed), whether or not they changed anything.
    """

    failed: frozenset[str] = frozenset()
    completed: tuple[TrackedOperation, ...] = ()
    processed: tuple[EmailOperation, ...] = ()
    deferred: frozenset[str] = frozenset()

    @property
    def ok(self) -> bool:
        return not self.failed


@dataclass
class _Round:
    """One apply's working set: decisions claimed so far, the operations still to settle."""

    observed: Mapping[str, Observation]
    stall_checks: Set[str]
    claimed: dict[str, Decision] = field(default_factory=dict)
    refused: dict[str, tuple[StateWrite, Decision, StoredState | None]] = field(default_factory=dict)
    stale: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    completed: list[TrackedOperation] = field(default_factory=list)


class ChangeApplier:
    """Decides observations against the recorded state, claims, publishes and settles.

    Keeps what it learnt (states read or written, ids known to have none) across calls, so one applier
    serves one invocation. ``active_index``: the states of the active index when the caller read it (they
    need no read); None when it did not, and a terminal state then also deletes its index entry.
    ``clock``: the API clock, read after the states so that a stall is measured as late as possible.
    ``tally``: where to count (the caller's, to report it even when an apply raises). ``claim_until``:
    epoch seconds (local clock) by which this invocation is over, plus a margin; ``local``: the local
    clock claims are judged by; ``waits``: how long to wait for another writer's claim (its ``sleep`` is
    the local clock's).
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
        active_index: Mapping[str, StoredState] | None = None,
        tally: ApplyTally | None = None,
        claim_until: Callable[[], int] | None = None,
        local: LocalClock | None = None,
        waits: Backoff = DEFAULT_WAITS,
    ) -> None:
        self.store = store
        self.sink = sink
        self.account_sid = account_sid
        self.stall_after_seconds = stall_after_seconds
        self.emit_first_sighting = emit_first_sighting
        self.clock = clock
        self.tally = tally if tally is not None else ApplyTally()
        self.owner = uuid.uuid4().hex
        self.local = local or LocalClock()
        self.claim_until = claim_until or (
            lambda: int(self.local.time()) + UNBOUNDED_CLAIM_SECONDS + CLAIM_MARGIN_SECONDS
        )
        self.waits = dataclasses.replace(waits, sleep=self.local.sleep)
        self._known: dict[str, StoredState] = dict(active_index or {})
        self._absent: set[str] = set()
        self._indexed: set[str] | None = None if active_index is None else set(active_index)

    def tracked(self, operation_id: str) -> StoredState | None:
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
        tracked ``stall_checks`` not observed; claim, publish, settle. A ``StateStoreError`` propagates: a
        claim written and not settled lapses with this invocation, and the next reader publishes its events
        (same keys)."""
        if not observed and not stall_checks:
            return Applied()
        self._read_missing(observed)
        work = _Round(observed, {op for op in stall_checks - observed.keys() if op in self._known})
        deferred = self._claim_all(work)
        owed = {op_id: d.changes for op_id, d in work.claimed.items() if d.changes}
        failed = publish_in_rounds(self.sink, owed, self.tally)
        work.failed |= failed
        self._settle(work.claimed, failed)
        processed = tuple(
            item.operation
            for op_id, item in observed.items()
            if op_id not in work.failed and op_id not in work.stale
        )
        return Applied(frozenset(work.failed), tuple(work.completed), processed, frozenset(deferred))

    # -- claiming ---------------------------------------------------------------------------------------

    def _claim_all(self, work: _Round) -> set[str]:
        """Decide and claim every operation of ``work``, reading again and deciding again after a refused
        write or while another writer's claim is in force. Returns the operations given up on."""
        # Observation order is publish order across operations too: kept through every attempt.
        order = [*work.observed, *sorted(work.stall_checks)]
        todo = set(order)
        for attempt in self.waits.attempts():
            if attempt > 1:
                self._read_again(todo)
                todo -= self._landed(work)
            busy, broken = self._finish_lapsed_claims(todo)
            work.failed |= broken
            ready = [op_id for op_id in order if op_id in todo - busy - broken]
            # One reading: a claim must carry the instant its decision was made with (a republish after a
            # lapse rebuilds the events from it).
            now = self.clock()
            decisions = self._decide(work, ready, now)
            refused = self._claim(work, decisions, now)
            todo = busy | refused
            if not todo:
                return set()
        self.tally.deferred += len(todo)
        work.failed |= todo
        for op_id in sorted(todo):
            logger.warning(
                "another writer kept the operation claimed; left for the next observation",
                extra={"operationId": op_id},
            )
        return todo

    def _read_missing(self, ids: Collection[str]) -> None:
        """A first read may lag (eventually consistent, half the cost): a state it shows too old makes the
        conditional write refused, and the state is then read again strongly. A claim it shows is read
        again at once: a lapsed claim is finished by publishing, which no later condition could undo."""
        to_read = [op_id for op_id in ids if op_id not in self._known and op_id not in self._absent]
        if to_read:
            found = self.store.get_states(to_read, consistent=False)
            self._known.update(found)
            self._absent.update(set(to_read) - found.keys())
            claimed = [op_id for op_id, state in found.items() if state.claim is not None]
            if claimed:
                self._read_again(claimed)

    def _read_again(self, ids: Collection[str]) -> None:
        found = self.store.get_states(ids)
        for op_id in ids:
            if op_id in found:
                self._known[op_id] = found[op_id]
                self._absent.discard(op_id)
            else:
                self._known.pop(op_id, None)
                self._absent.add(op_id)

    def _landed(self, work: _Round) -> set[str]:
        """Refused writes that were ours after all: DynamoDB applied the first attempt of a call whose
        answer was lost, and its retry found the condition no longer true. The state read again carries our
        own claim at the version we wrote."""
        landed = set()
        for op_id, (write, decision, previous) in work.refused.items():
            stored = self._known.get(op_id)
            if stored is None or stored.version != write.expected + 1:
                continue
            ours = stored.claim is not None and stored.claim.owner == self.owner
            if ours or (write.claim is None and stored.tracked() == write.state.tracked()):
                self.tally.write_conflicts -= 1
                work.claimed[op_id] = decision
                self._wrote(work, write, previous)
                landed.add(op_id)
        work.refused.clear()
        return landed

    def _finish_lapsed_claims(self, ids: Collection[str]) -> tuple[set[str], set[str]]:
        """Operations whose stored state carries a claim: ``busy`` while it is in force (or when settling
        a lapsed one was refused: read again), and those whose lapsed claim could not be published
        (``broken``). A lapsed claim's events are published again under the same keys, then settled."""
        wall_now = self.local.time()
        busy: set[str] = set()
        lapsed: dict[str, StoredState] = {}
        for op_id in ids:
            stored = self._known.get(op_id)
            if stored is None or stored.claim is None:
                continue
            if stored.claim.in_force(wall_now):
                busy.add(op_id)
            else:
                lapsed[op_id] = stored
        if not lapsed:
            return busy, set()
        owed = {
            op_id: claimed_changes(
                stored, account_sid=self.account_sid, stall_after_seconds=self.stall_after_seconds
            )
            for op_id, stored in lapsed.items()
        }
        broken = publish_in_rounds(self.sink, {op: c for op, c in owed.items() if c}, self.tally)
        settles = [
            _settle_of(stored, stored.claim.owner, self._indexed)
            for op_id, stored in lapsed.items()
            if op_id not in broken and stored.claim is not None
        ]
        refused = self.store.settle(settles)
        for settle in settles:
            if settle.operation_id not in refused:
                stored = lapsed[settle.operation_id]
                self._known[settle.operation_id] = stored.model_copy(update={"claim": None})
                self._index_moved(stored)
                self.tally.claims_recovered += 1
                logger.warning(
                    "finished the lapsed claim of a writer that stopped before settling it",
                    extra={"operationId": settle.operation_id, "version": settle.version},
                )
        return busy | refused, broken

    def _decide(self, work: _Round, ready: list[str], now: datetime) -> dict[str, Decision]:
        decisions: dict[str, Decision] = {}
        for op_id in ready:
            item = work.observed.get(op_id)
            if item is None:
                tracked = self._known.get(op_id)
                if tracked is not None:
                    decisions[op_id] = check_stall(
                        tracked,
                        account_sid=self.account_sid,
                        observed_at=now,
                        now=now,
                        stall_after_seconds=self.stall_after_seconds,
                    )
                continue
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
                work.stale.add(op_id)
            else:
                work.stale.discard(op_id)
            decisions[op_id] = decision
        return decisions

    def _claim(self, work: _Round, decisions: Mapping[str, Decision], now: datetime) -> set[str]:
        """Write the new states (with a claim where there are events); the refused operations."""
        until = self.claim_until()
        writes: list[StateWrite] = []
        for op_id, decision in decisions.items():
            if decision.new_state is None:
                continue
            previous = self._known.get(op_id)
            observed = work.observed.get(op_id)
            claim = None
            if decision.changes:
                observed_at = now if observed is None else observed.observed_at
                claim = new_claim(self.owner, until, previous, observed_at=observed_at, now=now)
            expected = 0 if previous is None else previous.version
            state = decision.new_state
            writes.append(StateWrite(state, expected, claim, _index_action(state, self._indexed)))
        refused = self.store.commit(writes) if writes else set()
        self.tally.write_conflicts += len(refused)
        for write in writes:
            previous = self._known.get(write.operation_id)
            if write.operation_id in refused:
                work.refused[write.operation_id] = (write, decisions[write.operation_id], previous)
            else:
                self._wrote(work, write, previous)
        for op_id, decision in decisions.items():
            if op_id not in refused:
                work.claimed[op_id] = decision
        return refused

    def _wrote(self, work: _Round, write: StateWrite, previous: StoredState | None) -> None:
        op_id = write.operation_id
        if write.state.status.terminal and previous is not None and not previous.status.terminal:
            work.completed.append(write.state.tracked())
        self._known[op_id] = StoredState.of(write.state, version=write.expected + 1, claim=write.claim)
        self._absent.discard(op_id)
        self.tally.states_written += 1
        if write.claim is None:  # with a claim the index entry follows when it is settled
            self._index_moved(write.state)

    def _index_moved(self, state: TrackedOperation) -> None:
        if self._indexed is not None:
            (self._indexed.discard if state.status.terminal else self._indexed.add)(state.operation_id)

    # -- publishing and settling ------------------------------------------------------------------------

    def _settle(self, claimed: Mapping[str, Decision], failed: Set[str]) -> None:
        """Settle this applier's claims: removed once all their events are out (the index entry follows),
        released (lapsing at once) when one was refused, so the next reader publishes them."""
        settles = []
        for op_id in claimed:
            stored = self._known.get(op_id)
            if stored is None or stored.claim is None or stored.claim.owner != self.owner:
                continue
            settles.append(_settle_of(stored, self.owner, self._indexed, release=op_id in failed))
        if not settles:
            return
        refused = self.store.settle(settles)
        for settle in settles:
            stored = self._known[settle.operation_id]
            if settle.operation_id in refused:
                # Only possible once this invocation outlived its own claim: someone finished it already.
                logger.warning(
                    "a claim of this invocation was taken over before it was settled",
                    extra={"operationId": settle.operation_id, "version": settle.version},
                )
                self._known.pop(settle.operation_id, None)
                continue
            claim = None
            if settle.release and stored.claim is not None:
                claim = stored.claim.model_copy(update={"until": 0})
            else:
                self._index_moved(stored)
            self._known[settle.operation_id] = stored.model_copy(update={"claim": claim})


def publish_in_rounds(sink: EventSink, changes: dict[str, list[Change]], tally: ApplyTally) -> set[str]:
    """Publish in rounds (every operation's 1st change, then 2nd, ...) so an operation whose earlier
    event failed never gets a later one out. Returns the operations with a failed event."""
    failed_ops: set[str] = set()
    tally.changes_detected += sum(len(c) for c in changes.values())
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
            failed_ops |= _publish_round(sink, batch, owners, tally)
    return failed_ops


def _publish_round(
    sink: EventSink, batch: list[OutgoingEvent], owners: dict[str, str], tally: ApplyTally
) -> set[str]:
    result = sink.publish(batch)
    tally.events_published += len(result.accepted)
    failed_ops: set[str] = set()
    for failure in result.failed:
        op_id = owners[failure.event.event_key]
        failed_ops.add(op_id)
        logger.error(
            "event not accepted by EventBridge after retries; its claim is released for the next reader",
            extra={
                "operationId": op_id,
                "eventKey": failure.event.event_key,
                "errorCode": failure.error_code,
                "errorMessage": failure.error_message[:300],
            },
        )
    tally.publish_failures += len(result.failed)
    return failed_ops


def _index_action(state: TrackedOperation, indexed: Set[str] | None) -> IndexAction:
    """``indexed``: the operations known to have an active index entry (None: unknown)."""
    if not state.status.terminal:
        return IndexAction.PUT
    if indexed is not None and state.operation_id not in indexed:
        return IndexAction.NONE
    return IndexAction.DELETE


def _settle_of(stored: StoredState, owner: str, indexed: Set[str] | None, *, release: bool = False) -> Settle:
    return Settle(
        stored.operation_id,
        stored.version,
        owner,
        release=release,
        state=stored.tracked(),
        index=_index_action(stored, indexed),
    )
