"""ChangeApplier on its own, as a path without listings uses it (operations fetched by id), and the version
protocol between writers (comms_bridge.poller.claims): read, decide, claim, publish in per-operation order,
settle; a writer that was not first reads again and decides again; a claim in force is waited for, a
lapsed one finished. Two appliers sharing one in-memory table stand for the poller and the stream consumer
(or two overlapping poller runs); ``before_commit`` lets one act between the other's read and write."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pytest

from comms_bridge.aws.eventbridge import OutgoingEvent
from comms_bridge.aws.retry import Backoff
from comms_bridge.comms.models import EmailOperation, OperationStatus
from comms_bridge.poller.apply import Applied, ChangeApplier, Observation
from comms_bridge.poller.change_detection import TrackedOperation
from comms_bridge.poller.claims import IndexAction, LocalClock, Settle, StateWrite, claimed_changes, new_claim
from comms_bridge.poller.exceptions import StateStoreError
from tests.support.operation_factory import ACCOUNT_SID, at, operation, operation_id
from tests.support.poller_fakes import Journal, MemoryEventSink, MemoryStateStore

STATUS = "Email Operation Status Changed"
STATS = "Email Operation Stats Changed"
STALLED = "Email Operation Stalled"
WALL = 1_000_000.0  # the local clock of the tests' invocations (epoch seconds)


class Wall:
    """The local clock, moved by hand; ``sleep`` moves it too (the applier's waits take no real time)."""

    def __init__(self, now: float = WALL) -> None:
        self.now = now
        self.slept: list[float] = []
        self.on_sleep: list[object] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        if self.on_sleep:
            action = self.on_sleep.pop(0)
            assert callable(action)
            action()


def op(n: int, status: str = "PROCESSING", *, updated: float = 60, sent: int = 0) -> EmailOperation:
    return operation(status, op_id=operation_id(n), updated=updated, total=10, queued=10 - sent, sent=sent)


def applier(
    store: MemoryStateStore,
    sink: MemoryEventSink,
    *,
    now: float = 120,
    index: bool = False,
    wall: Wall | None = None,
    lifetime: float = 60,
) -> ChangeApplier:
    clock = wall or Wall()
    return ChangeApplier(
        store,
        sink,
        account_sid=ACCOUNT_SID,
        stall_after_seconds=600,
        emit_first_sighting=True,
        clock=lambda: at(now),
        active_index=dict(store.index) if index else None,
        local=LocalClock(clock, clock.sleep),
        claim_until=lambda: int(clock() + lifetime),
        waits=Backoff(max_attempts=4, base_delay=0.2, max_delay=1.0),
    )


def observed(*operations: EmailOperation, when: float = 100) -> dict[str, Observation]:
    return {o.id: Observation(o, at(when)) for o in operations}


def deltas_sent(sink: MemoryEventSink, n: int) -> int:
    return sum(e.detail["delta"]["sent"] for e in sink.events if e.detail["operationId"] == operation_id(n))


@pytest.fixture
def journal() -> Journal:
    return Journal()


@pytest.fixture
def store(journal: Journal) -> MemoryStateStore:
    return MemoryStateStore(journal)


@pytest.fixture
def sink(journal: Journal) -> MemoryEventSink:
    return MemoryEventSink(journal)


def test_operations_fetched_by_id_are_claimed_published_then_settled(
    store: MemoryStateStore, sink: MemoryEventSink, journal: Journal
) -> None:
    store.seed([TrackedOperation.from_operation(op(1))])
    journal.entries.clear()
    a = applier(store, sink)
    result = a.apply(observed(op(1, "COMPLETED", updated=100, sent=10), op(2)))
    assert result == Applied(
        failed=frozenset(),
        completed=(TrackedOperation.from_operation(op(1, "COMPLETED", updated=100, sent=10)),),
        processed=(op(1, "COMPLETED", updated=100, sent=10), op(2)),
    )
    assert [(e.detail_type, e.detail["operationId"], e.detail["previousStatus"]) for e in sink.events] == [
        (STATUS, operation_id(1), "PROCESSING"),
        (STATUS, operation_id(2), None),
    ]
    # Claim before publish: the states (with their claims) are written first, settled once the events are out.
    assert [kind for kind, _ in journal.entries] == [
        "write",
        "write",
        "publish",
        "publish",
        "settle",
        "settle",
    ]
    assert store.states[operation_id(1)].version == 2 and store.states[operation_id(2)].version == 1
    assert all(state.claim is None for state in store.states.values()), "every claim settled"
    # Without the active index at hand, a terminal state removes its index entry whatever it was.
    assert operation_id(1) not in store.index and operation_id(2) in store.index
    assert store.index[operation_id(2)].version == 1, "the index copy carries the version"
    assert store.counters.calls["BatchGetItem"] == 1, "both states read in one go"
    again = a.apply(observed(op(1, "COMPLETED", updated=100, sent=10), op(2)))
    assert again.ok and sink.drain()[2:] == [], "the same versions again: nothing new"
    assert store.counters.calls["BatchGetItem"] == 1, "states it wrote are not read back"
    assert a.tally.events_published == 2 and a.tally.states_written == 2


def test_a_refused_event_releases_its_claim_and_the_next_reader_publishes_it(
    store: MemoryStateStore, sink: MemoryEventSink, journal: Journal
) -> None:
    # Operation 1 gets two events in one decision (a status change, then its stall): round by round.
    store.seed([TrackedOperation.from_operation(op(1, "SCHEDULED", updated=0))])
    journal.entries.clear()
    sink.refuse = lambda event: event.detail["operationId"] == operation_id(1)
    a = applier(store, sink, now=2000)
    result = a.apply(observed(op(1, updated=60), op(2, updated=60)))
    assert result.failed == {operation_id(1)} and not result.ok
    assert [e.detail["operationId"] for e in sink.events] == [operation_id(2), operation_id(2)]
    stored = store.states[operation_id(1)]
    assert stored.status is OperationStatus.PROCESSING and stored.claim is not None
    assert stored.claim.until == 0, "released: it lapses at once, the events it owes are not lost"
    assert ("release", operation_id(1)) in journal.entries
    assert [o.id for o in result.processed] == [operation_id(2)]
    assert a.tally.changes_detected == 4 and a.tally.publish_failures == 1
    sink.refuse = lambda event: False
    # Another writer (the next run, or the stream consumer) finishes the released claim first.
    b = applier(store, sink, now=2500)
    assert b.apply(observed(op(1, updated=60))).ok
    owed = sink.events[2:]
    assert [e.detail_type for e in owed] == [STATUS, STALLED], "in the order decided"
    assert owed[1].detail["stalledForSeconds"] == 2000 - 60, "rebuilt exactly: the claimer's clock"
    assert store.states[operation_id(1)].claim is None and b.tally.claims_recovered == 1


def test_stall_checks_apply_to_tracked_operations_not_observed(
    store: MemoryStateStore, sink: MemoryEventSink
) -> None:
    store.seed([TrackedOperation.from_operation(op(n)) for n in (1, 2)])
    a = applier(store, sink, now=60 + 600, index=True)
    result = a.apply(observed(op(2, updated=70, sent=1)), {operation_id(1), operation_id(2)})
    assert result.ok
    assert sorted((e.detail["operationId"], e.detail_type) for e in sink.events) == [
        (operation_id(1), STALLED),
        (operation_id(2), STATS),
    ]
    assert store.states[operation_id(1)].stalled_for_updated_at == store.states[operation_id(1)].updated_at
    assert a.apply(observed(), {operation_id(1)}) == Applied() and len(sink.events) == 2, "once per stall"


def test_an_older_observation_is_stale_and_changes_nothing(
    store: MemoryStateStore, sink: MemoryEventSink
) -> None:
    store.seed([TrackedOperation.from_operation(op(1, "COMPLETED", updated=100, sent=10))])
    a = applier(store, sink)
    result = a.apply(observed(op(1, updated=60)))
    assert result == Applied() and sink.events == []
    assert a.tally.stale_observations == 1
    assert store.states[operation_id(1)].status is OperationStatus.COMPLETED


def test_a_failed_state_write_propagates_before_anything_is_published(
    store: MemoryStateStore, sink: MemoryEventSink
) -> None:
    store.fail_writes = True
    a = applier(store, sink)
    with pytest.raises(StateStoreError):
        a.apply(observed(op(1)))
    assert sink.events == [] and a.tally.states_written == 0
    assert a.tracked(operation_id(1)) is None, "not recorded as known: the next observation decides again"
    store.fail_writes = False
    a.apply(observed(op(1)))
    assert len(sink.events) == 1, "published once"


def test_nothing_to_apply_touches_nothing(store: MemoryStateStore, sink: MemoryEventSink) -> None:
    def no_clock() -> datetime:
        raise AssertionError("the clock is not read")

    a = ChangeApplier(
        store,
        sink,
        account_sid=ACCOUNT_SID,
        stall_after_seconds=600,
        emit_first_sighting=True,
        clock=no_clock,
    )
    assert a.apply({}) == Applied()
    assert store.counters.calls == {} and sink.put_events_calls == 0


# -- the version protocol: two writers on one operation ------------------------------------------------


def test_a_slower_writer_never_puts_an_older_state_back(
    store: MemoryStateStore, sink: MemoryEventSink
) -> None:
    store.seed([TrackedOperation.from_operation(op(1, sent=1))])
    slow, fast = applier(store, sink), applier(store, sink)
    # Both read version 1; the faster one stores the completion while the slower one is still deciding.
    slow_reads = op(1, updated=80, sent=5)

    def fast_writes_first(_: Sequence[StateWrite]) -> None:
        assert fast.apply(observed(op(1, "COMPLETED", updated=100, sent=10))).ok

    store.before_commit = fast_writes_first
    result = slow.apply(observed(slow_reads))
    assert result.ok and result.processed == ()
    assert slow.tally.write_conflicts == 1 and slow.tally.stale_observations == 1
    final = store.states[operation_id(1)]
    assert final.status is OperationStatus.COMPLETED and final.version == 2
    assert [e.detail["status"] for e in sink.events] == ["COMPLETED"], "the slower writer published nothing"


def test_two_writers_from_one_old_state_never_double_count_a_delta(
    store: MemoryStateStore, sink: MemoryEventSink
) -> None:
    store.seed([TrackedOperation.from_operation(op(1, sent=1))])
    poller, consumer = applier(store, sink), applier(store, sink)

    def consumer_first(_: Sequence[StateWrite]) -> None:
        assert consumer.apply(observed(op(1, updated=80, sent=5))).ok

    store.before_commit = consumer_first
    assert poller.apply(observed(op(1, updated=90, sent=8))).ok
    stats = [e for e in sink.events if e.detail_type == STATS]
    assert [(e.detail["previousStats"]["sent"], e.detail["stats"]["sent"]) for e in stats] == [(1, 5), (5, 8)]
    assert deltas_sent(sink, 1) == 8 - 1, "a consumer summing deltas gets the true total"
    assert len({e.event_key for e in stats}) == 2 and store.states[operation_id(1)].version == 3


def test_a_change_both_paths_see_is_published_once(store: MemoryStateStore, sink: MemoryEventSink) -> None:
    store.seed([TrackedOperation.from_operation(op(1, "SCHEDULED", updated=0))])
    poller, consumer = applier(store, sink, index=True), applier(store, sink)
    same = op(1, updated=60, sent=2)

    def consumer_first(_: Sequence[StateWrite]) -> None:
        assert consumer.apply(observed(same, when=70)).ok

    store.before_commit = consumer_first
    result = poller.apply(observed(same, when=100))
    assert result.ok and [o.id for o in result.processed] == [operation_id(1)]
    assert [(e.detail_type, e.detail["observedAt"]) for e in sink.events] == [
        (STATUS, "2024-06-20T10:01:10Z")
    ]
    assert poller.tally.write_conflicts == 1 and poller.tally.events_published == 0


def test_a_claim_in_force_is_waited_for(store: MemoryStateStore, sink: MemoryEventSink) -> None:
    store.seed([TrackedOperation.from_operation(op(1, "SCHEDULED", updated=0))])
    wall = Wall()
    # Another writer has claimed the change and is publishing it right now.
    claim_as(store, "other", op(1, updated=60), until=wall.now + 60)
    wall.on_sleep.append(lambda: finish_as(store, sink, "other"))
    consumer = applier(store, sink, wall=wall)
    result = consumer.apply(observed(op(1, updated=60)))
    assert result.ok and wall.slept == [0.2], "read again after one wait"
    assert [e.detail_type for e in sink.events] == [STATUS], "published once, by the claimer"
    assert consumer.tally.deferred == 0 and consumer.tally.events_published == 0


def test_a_claim_that_stays_in_force_defers_the_operation(
    store: MemoryStateStore, sink: MemoryEventSink
) -> None:
    store.seed([TrackedOperation.from_operation(op(1, "SCHEDULED", updated=0))])
    wall = Wall()
    claim_as(store, "other", op(1, updated=60), until=wall.now + 3600)
    other = applier(store, sink, wall=wall)
    result = other.apply(observed(op(2), op(1, updated=60)))
    assert result.failed == result.deferred == {operation_id(1)}
    assert [o.id for o in result.processed] == [operation_id(2)], "the rest goes on"
    assert other.tally.deferred == 1 and sum(wall.slept) == pytest.approx(0.2 + 0.4 + 0.8)
    assert [e.detail["operationId"] for e in sink.events] == [operation_id(2)]


def test_a_claim_left_by_a_crash_is_finished_once_it_lapses(
    store: MemoryStateStore, sink: MemoryEventSink, journal: Journal
) -> None:
    store.seed([TrackedOperation.from_operation(op(1, "SCHEDULED", updated=0))])
    wall = Wall()
    crashed = applier(store, sink, wall=wall, lifetime=60)
    sink.publish = _crash  # type: ignore[method-assign,assignment]
    with pytest.raises(_Paused):
        crashed.apply(observed(op(1, updated=60, sent=3), when=90))
    del sink.publish
    assert store.states[operation_id(1)].claim is not None and sink.events == []
    wall.now += 61  # the crashed invocation's deadline (and the margin) passed
    later = applier(store, sink, wall=wall, now=400)
    result = later.apply(observed(op(1, updated=300, sent=9), when=400))
    assert result.ok and later.tally.claims_recovered == 1
    assert [(e.detail_type, e.detail["stats"]["sent"], e.detail["observedAt"]) for e in sink.events] == [
        (STATUS, 3, "2024-06-20T10:01:30Z"),  # what the crashed writer owed, as it decided it
        (STATS, 9, "2024-06-20T10:06:40Z"),
    ]
    assert deltas_sent(sink, 1) == 9 and store.states[operation_id(1)].claim is None


def test_a_writer_that_outlives_its_claim_never_overwrites_the_one_that_took_over(
    store: MemoryStateStore, sink: MemoryEventSink, journal: Journal, caplog: pytest.LogCaptureFixture
) -> None:
    store.seed([TrackedOperation.from_operation(op(1, "SCHEDULED", updated=0))])
    wall = Wall()
    slow = applier(store, sink, wall=wall, lifetime=60)
    real_publish = sink.publish
    took_over: list[bool] = []

    def stalled_publish(events: Sequence[object]) -> object:
        if not took_over:
            took_over.append(True)
            wall.now += 120  # the slow writer hangs past its claim; another writer finds it lapsed
            later = applier(store, sink, wall=wall, now=200)
            assert later.apply(observed(op(1, "COMPLETED", updated=150, sent=10))).ok
        return real_publish(events)  # type: ignore[arg-type]

    sink.publish = stalled_publish  # type: ignore[method-assign,assignment]
    with caplog.at_level("WARNING"):
        result = slow.apply(observed(op(1, updated=60)))
    assert result.ok
    assert "taken over" in caplog.text
    final = store.states[operation_id(1)]
    assert final.status is OperationStatus.COMPLETED and final.claim is None, "the newer state stays"
    keys = [(e.detail_type, e.detail["status"], e.event_key) for e in sink.events]
    assert [k[:2] for k in keys] == [(STATUS, "PROCESSING"), (STATUS, "COMPLETED"), (STATUS, "PROCESSING")]
    assert keys[0][2] == keys[2][2], "the late duplicate carries the key of the first publish"


def test_a_write_whose_answer_was_lost_is_recognised_as_its_own(
    store: MemoryStateStore, sink: MemoryEventSink
) -> None:
    store.seed([TrackedOperation.from_operation(op(1, "SCHEDULED", updated=0))])
    a = applier(store, sink)
    real_commit = store.commit

    def applied_but_reported_refused(writes: Sequence[StateWrite]) -> set[str]:
        store.commit = real_commit  # type: ignore[method-assign]
        real_commit(writes)
        return {w.operation_id for w in writes}

    store.commit = applied_but_reported_refused  # type: ignore[method-assign,assignment]
    result = a.apply(observed(op(1, updated=60)))
    assert result.ok and [e.detail_type for e in sink.events] == [STATUS]
    assert store.states[operation_id(1)].claim is None and a.tally.write_conflicts == 0


# -- another writer, driven by hand ---------------------------------------------------------------------


class _Paused(Exception):
    """A writer stopped between its write and its publish (a crash)."""


def _crash(events: object) -> object:
    raise _Paused


def claim_as(store: MemoryStateStore, owner: str, version: EmailOperation, *, until: float) -> None:
    """What another writer's claim step does: store ``version`` with a claim on what it owes."""
    previous = store.states[version.id]
    state = TrackedOperation.from_operation(version)
    claim = new_claim(owner, int(until), previous, observed_at=at(100), now=at(120))
    write = StateWrite(state, previous.version, claim, IndexAction.PUT)
    assert store.commit([write]) == set()


def finish_as(store: MemoryStateStore, sink: MemoryEventSink, owner: str) -> None:
    """What that writer does next: publish the events its claim owes, then settle it."""
    for op_id, stored in list(store.states.items()):
        if stored.claim is None or stored.claim.owner != owner:
            continue
        owed = claimed_changes(stored, account_sid=ACCOUNT_SID, stall_after_seconds=600)
        sink.publish([OutgoingEvent(str(c.detail_type), c.detail, c.event_key) for c in owed])
        assert store.settle([Settle(op_id, stored.version, owner)]) == set()
