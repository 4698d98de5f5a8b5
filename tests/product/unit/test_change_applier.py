"""ChangeApplier on its own, as a path without listings uses it (operations fetched by id): read missing
states, decide, publish in per-operation order, store only what was published."""

from __future__ import annotations

from datetime import datetime

import pytest

from comms_bridge.comms.models import EmailOperation, OperationStatus
from comms_bridge.poller.apply import Applied, ChangeApplier, Observation
from comms_bridge.poller.change_detection import TrackedOperation
from comms_bridge.poller.exceptions import StateStoreError
from tests.support.operation_factory import ACCOUNT_SID, at, operation, operation_id
from tests.support.poller_fakes import Journal, MemoryEventSink, MemoryStateStore

STATUS = "Email Operation Status Changed"
STATS = "Email Operation Stats Changed"
STALLED = "Email Operation Stalled"


def op(n: int, status: str = "PROCESSING", *, updated: float = 60, sent: int = 0) -> EmailOperation:
    return operation(status, op_id=operation_id(n), updated=updated, total=10, queued=10 - sent, sent=sent)


def applier(
    store: MemoryStateStore, sink: MemoryEventSink, *, now: float = 120, index: bool = False
) -> ChangeApplier:
    return ChangeApplier(
        store,
        sink,
        account_sid=ACCOUNT_SID,
        stall_after_seconds=600,
        emit_first_sighting=True,
        clock=lambda: at(now),
        active_index=dict(store.index) if index else None,
    )


def observed(*operations: EmailOperation, when: float = 100) -> dict[str, Observation]:
    return {o.id: Observation(o, at(when)) for o in operations}


@pytest.fixture
def journal() -> Journal:
    return Journal()


@pytest.fixture
def store(journal: Journal) -> MemoryStateStore:
    return MemoryStateStore(journal)


@pytest.fixture
def sink(journal: Journal) -> MemoryEventSink:
    return MemoryEventSink(journal)


def test_operations_fetched_by_id_are_decided_published_then_stored(
    store: MemoryStateStore, sink: MemoryEventSink, journal: Journal
) -> None:
    store.write_states([TrackedOperation.from_operation(op(1))])
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
    assert [kind for kind, _ in journal.entries] == ["publish", "publish", "write", "write"]
    # Without the active index at hand, a terminal state removes its index entry whatever it was.
    assert operation_id(1) not in store.index and operation_id(2) in store.index
    assert store.counters.calls["BatchGetItem"] == 1, "both states read in one go"
    again = a.apply(observed(op(1, "COMPLETED", updated=100, sent=10), op(2)))
    assert again.ok and sink.drain()[2:] == [], "the same versions again: nothing new"
    assert store.counters.calls["BatchGetItem"] == 1, "states it wrote are not read back"
    assert a.tally.events_published == 2 and a.tally.states_written == 2


def test_a_refused_event_stops_that_operation_only_and_keeps_its_state(
    store: MemoryStateStore, sink: MemoryEventSink, journal: Journal
) -> None:
    # Operation 1 gets two events in one decision (a status change, then its stall): round by round.
    store.write_states([TrackedOperation.from_operation(op(1, "SCHEDULED", updated=0))])
    journal.entries.clear()
    sink.refuse = lambda event: event.detail["operationId"] == operation_id(1)
    a = applier(store, sink, now=2000)
    result = a.apply(observed(op(1, updated=60), op(2, updated=60)))
    assert result.failed == {operation_id(1)} and not result.ok
    assert [e.detail["operationId"] for e in sink.events] == [operation_id(2), operation_id(2)]
    assert store.states[operation_id(1)].status is OperationStatus.SCHEDULED, "state kept"
    assert [o.id for o in result.processed] == [operation_id(2)]
    assert a.tally.changes_detected == 4 and a.tally.publish_failures == 1
    sink.refuse = lambda event: False
    a.apply(observed(op(1, updated=60)))
    assert [e.detail_type for e in sink.events[2:]] == [STATUS, STALLED], "in the order decided"


def test_stall_checks_apply_to_tracked_operations_not_observed(
    store: MemoryStateStore, sink: MemoryEventSink
) -> None:
    store.write_states([TrackedOperation.from_operation(op(n)) for n in (1, 2)])
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
    store.write_states([TrackedOperation.from_operation(op(1, "COMPLETED", updated=100, sent=10))])
    a = applier(store, sink)
    result = a.apply(observed(op(1, updated=60)))
    assert result == Applied() and sink.events == []
    assert a.tally.stale_observations == 1
    assert store.states[operation_id(1)].status is OperationStatus.COMPLETED


def test_a_failed_state_write_propagates_after_publishing(
    store: MemoryStateStore, sink: MemoryEventSink
) -> None:
    store.fail_writes = True
    a = applier(store, sink)
    with pytest.raises(StateStoreError):
        a.apply(observed(op(1)))
    assert len(sink.events) == 1 and a.tally.events_published == 1 and a.tally.states_written == 0
    assert a.tracked(operation_id(1)) is None, "not recorded as known: the next observation decides again"
    store.fail_writes = False
    a.apply(observed(op(1)))
    assert sink.events[0].event_key == sink.events[1].event_key, "republished with its key"


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
