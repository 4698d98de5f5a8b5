"""One test per rule of contract §3 for ``comms_bridge.poller.change_detection.decide`` / ``check_stall``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from pydantic import ValidationError

from comms_bridge.comms.models import EmailOperation, OperationStatus
from comms_bridge.events.detail_types import DetailType
from comms_bridge.poller.change_detection import (
    Decision,
    TrackedOperation,
    check_stall,
    decide,
    is_older,
)
from tests.support.operation_factory import ACCOUNT_SID, OPERATION_ID, at, operation, ts
from tests.support.schemas import validate_detail

STALL = 1800
S = OperationStatus


def run(
    previous: TrackedOperation | None,
    observed: EmailOperation,
    *,
    now: datetime | None = None,
    observed_at: datetime | None = None,
    emit_first_sighting: bool = True,
    stall_after_seconds: int = STALL,
    account_sid: str = ACCOUNT_SID,
) -> Decision:
    now = now if now is not None else observed.updated
    decision = decide(
        previous,
        observed,
        account_sid=account_sid,
        observed_at=observed_at if observed_at is not None else now,
        now=now,
        stall_after_seconds=stall_after_seconds,
        emit_first_sighting=emit_first_sighting,
    )
    for change in decision.changes:
        validate_detail(change.detail_type, change.detail)
        assert change.detail["eventKey"] == change.event_key
        assert change.operation_id == change.detail["operationId"] == observed.id
    return decision


def tracked(op: EmailOperation, stalled_for_updated_at: str | None = None) -> TrackedOperation:
    return TrackedOperation.from_operation(op, stalled_for_updated_at=stalled_for_updated_at)


def types(decision: Decision) -> list[DetailType]:
    return [change.detail_type for change in decision.changes]


def only(decision: Decision) -> dict[str, Any]:
    assert len(decision.changes) == 1, decision.changes
    return decision.changes[0].detail


# --- first sighting --------------------------------------------------------------------------------------


def test_first_sighting_emits_status_changed_from_null() -> None:
    op = operation(S.SCHEDULED, total=5, scheduled=5)
    decision = run(None, op)
    detail = only(decision)
    assert decision.changes[0].detail_type is DetailType.STATUS_CHANGED
    assert detail["previousStatus"] is None
    assert detail["previousStats"] is None
    assert detail["delta"] == detail["stats"] == op.stats.as_dict()
    assert decision.new_state == tracked(op)
    assert not decision.stale


def test_first_sighting_on_baseline_run_records_silently() -> None:
    op = operation(S.COMPLETED, total=5, delivered=5)
    decision = run(None, op, emit_first_sighting=False)
    assert decision.changes == []
    assert decision.new_state == tracked(op)


def test_baseline_run_defers_a_due_stall_to_the_next_run() -> None:
    op = operation(S.PROCESSING, updated=0)
    decision = run(None, op, now=at(STALL * 3), emit_first_sighting=False)
    assert decision.changes == []
    assert decision.new_state is not None
    assert decision.new_state.stalled_for_updated_at is None
    follow_up = check_stall(
        decision.new_state,
        account_sid=ACCOUNT_SID,
        observed_at=at(STALL * 3 + 60),
        now=at(STALL * 3 + 60),
        stall_after_seconds=STALL,
    )
    assert types(follow_up) == [DetailType.STALLED]


def test_first_sighting_of_an_already_stalled_operation_emits_status_then_stalled() -> None:
    op = operation(S.PROCESSING, updated=0)
    decision = run(None, op, now=at(STALL))
    assert types(decision) == [DetailType.STATUS_CHANGED, DetailType.STALLED]
    assert decision.new_state is not None
    assert decision.new_state.stalled_for_updated_at == op.updated_at


# --- status and stats ------------------------------------------------------------------------------------


def test_status_change_emits_one_status_changed_with_delta_against_previous() -> None:
    before = operation(S.PROCESSING, updated=60, total=10, queued=10)
    after = operation(S.COMPLETED, updated=120, total=10, sent=10, delivered=8, failed=2)
    decision = run(tracked(before), after)
    detail = only(decision)
    assert decision.changes[0].detail_type is DetailType.STATUS_CHANGED
    assert detail["previousStatus"] == "PROCESSING"
    assert detail["status"] == "COMPLETED"
    assert detail["terminal"] is True
    assert detail["previousStats"] == before.stats.as_dict()
    assert detail["delta"]["queued"] == -10
    assert detail["delta"]["delivered"] == 8
    assert detail["rates"] == {
        "delivered": 0.8,
        "opened": 0.0,
        "undelivered": 0.0,
        "failed": 0.2,
        "canceled": 0.0,
    }
    assert decision.new_state == tracked(after)


def test_a_skipped_status_is_not_invented() -> None:
    decision = run(tracked(operation(S.SCHEDULED, updated=60)), operation(S.COMPLETED, updated=600))
    detail = only(decision)
    assert (detail["previousStatus"], detail["status"]) == ("SCHEDULED", "COMPLETED")


def test_same_status_other_stats_emits_one_stats_changed() -> None:
    before = operation(S.PROCESSING, updated=60, total=10, queued=10)
    after = operation(S.PROCESSING, updated=90, total=10, queued=4, sent=6)
    decision = run(tracked(before), after)
    detail = only(decision)
    assert decision.changes[0].detail_type is DetailType.STATS_CHANGED
    assert detail["previousStatus"] == detail["status"] == "PROCESSING"
    assert detail["delta"]["sent"] == 6
    assert detail["terminal"] is False
    assert "stalledForSeconds" not in detail


def test_stats_keep_being_reported_after_completed() -> None:
    before = operation(S.COMPLETED, updated=600, total=10, delivered=10)
    after = operation(S.COMPLETED, updated=4000, total=10, delivered=10, opened=7)
    detail = only(run(tracked(before), after))
    assert detail["previousStatus"] == "COMPLETED"
    assert detail["delta"]["opened"] == 7
    assert detail["rates"]["opened"] == 0.7


def test_unchanged_observation_emits_nothing_and_writes_nothing() -> None:
    op = operation(S.COMPLETED, updated=600, total=3, delivered=3)
    decision = run(tracked(op), op, now=at(10_000))
    assert decision == Decision(changes=[], new_state=None, stale=False)


def test_updated_at_moving_without_visible_change_is_persisted_silently() -> None:
    before = operation(S.COMPLETED, updated=600, total=3)
    after = operation(S.COMPLETED, updated=700, total=3)
    decision = run(tracked(before), after)
    assert decision.changes == []
    assert decision.new_state == tracked(after)


def test_status_and_stats_change_together_give_only_status_changed() -> None:
    decision = run(tracked(operation(S.SCHEDULED, total=1)), operation(S.PROCESSING, updated=61, total=2))
    assert types(decision) == [DetailType.STATUS_CHANGED]


# --- stale observations ----------------------------------------------------------------------------------


def test_older_observation_is_stale_and_changes_nothing() -> None:
    recorded = operation(S.COMPLETED, updated=600, total=5, delivered=5)
    older = operation(S.PROCESSING, updated=300, total=5, queued=5)
    decision = run(tracked(recorded), older, now=at(700))
    assert decision == Decision(changes=[], new_state=None, stale=True)


def test_older_observation_with_other_stats_is_stale() -> None:
    recorded = operation(S.PROCESSING, updated=600, total=5, sent=5)
    older = operation(S.PROCESSING, updated=599, total=5, sent=4)
    assert run(tracked(recorded), older).stale


def test_same_second_earlier_status_is_stale() -> None:
    recorded = operation(S.COMPLETED, updated=600)
    lagging = operation(S.PROCESSING, updated=600)
    assert run(tracked(recorded), lagging).stale


def test_same_second_other_stats_counts_as_newer() -> None:
    recorded = operation(S.PROCESSING, updated=600, sent=1)
    same_second = operation(S.PROCESSING, updated=600, sent=2)
    decision = run(tracked(recorded), same_second)
    assert types(decision) == [DetailType.STATS_CHANGED]
    assert not decision.stale


def test_is_older_compares_instants_not_strings() -> None:
    recorded = tracked(operation(updated=600))
    same = EmailOperation.model_validate(
        {**operation(updated=600).to_api_dict(), "updatedAt": "2024-06-20T10:10:00.000Z"}
    )
    assert not is_older(same, recorded)


# --- stalls ----------------------------------------------------------------------------------------------


def test_processing_operation_stalls_after_exactly_the_threshold() -> None:
    op = operation(S.PROCESSING, updated=0, total=4, queued=4)
    assert run(tracked(op), op, now=at(STALL - 1)).changes == []
    decision = run(tracked(op), op, now=at(STALL), observed_at=at(STALL))
    detail = only(decision)
    assert decision.changes[0].detail_type is DetailType.STALLED
    assert detail["stalledForSeconds"] == STALL
    assert detail["previousStatus"] == "PROCESSING"
    assert detail["previousStats"] == detail["stats"]
    assert set(detail["delta"].values()) == {0}
    assert detail["observedAt"] == ts(STALL)
    assert decision.new_state == tracked(op, stalled_for_updated_at=op.updated_at)


def test_stalled_for_seconds_is_whole_seconds() -> None:
    op = operation(S.PROCESSING, updated=0)
    detail = only(run(tracked(op), op, now=at(STALL + 59.9)))
    assert detail["stalledForSeconds"] == STALL + 59
    assert isinstance(detail["stalledForSeconds"], int)


def test_stall_is_reported_once_per_updated_at() -> None:
    op = operation(S.PROCESSING, updated=0)
    state = tracked(op, stalled_for_updated_at=op.updated_at)
    assert run(state, op, now=at(STALL * 10)) == Decision(changes=[], new_state=None)
    assert (
        check_stall(
            state, account_sid=ACCOUNT_SID, observed_at=at(1), now=at(STALL * 10), stall_after_seconds=STALL
        )
        == Decision()
    )


def test_stall_rearms_when_updated_at_moves() -> None:
    first = operation(S.PROCESSING, updated=0, sent=1)
    state = tracked(first, stalled_for_updated_at=first.updated_at)
    moved = operation(S.PROCESSING, updated=STALL + 100, sent=2)
    decision = run(state, moved, now=at(STALL + 100))
    assert types(decision) == [DetailType.STATS_CHANGED]
    assert decision.new_state == tracked(moved)  # the marker is cleared: re-armed
    later = run(decision.new_state, moved, now=at(2 * STALL + 100))
    assert types(later) == [DetailType.STALLED]
    assert later.changes[0].event_key != run(tracked(first), first, now=at(STALL)).changes[0].event_key


def test_status_change_into_a_stalled_processing_orders_status_first() -> None:
    before = operation(S.SCHEDULED, updated=0)
    after = operation(S.PROCESSING, updated=10)
    decision = run(tracked(before), after, now=at(10 + STALL))
    assert types(decision) == [DetailType.STATUS_CHANGED, DetailType.STALLED]
    assert decision.new_state == tracked(after, stalled_for_updated_at=after.updated_at)


def test_stats_change_and_stall_in_the_same_decision() -> None:
    before = operation(S.PROCESSING, updated=0, sent=1)
    after = operation(S.PROCESSING, updated=10, sent=2)
    decision = run(tracked(before), after, now=at(10 + STALL))
    assert types(decision) == [DetailType.STATS_CHANGED, DetailType.STALLED]


@pytest.mark.parametrize("status", [S.SCHEDULED, S.COMPLETED, S.CANCELED])
def test_only_processing_operations_stall(status: OperationStatus) -> None:
    op = operation(status, updated=0)
    assert run(tracked(op), op, now=at(STALL * 100)).changes == []
    assert (
        check_stall(
            tracked(op),
            account_sid=ACCOUNT_SID,
            observed_at=at(0),
            now=at(STALL * 100),
            stall_after_seconds=STALL,
        ).changes
        == []
    )


def test_clock_behind_updated_at_never_stalls() -> None:
    op = operation(S.PROCESSING, updated=STALL * 5)
    assert run(tracked(op), op, now=at(0)).changes == []


def test_check_stall_matches_decide_for_an_unchanged_operation() -> None:
    op = operation(S.PROCESSING, updated=0, total=2, queued=2)
    via_decide = run(tracked(op), op, now=at(STALL + 5), observed_at=at(STALL + 6))
    via_check = check_stall(
        tracked(op),
        account_sid=ACCOUNT_SID,
        observed_at=at(STALL + 6),
        now=at(STALL + 5),
        stall_after_seconds=STALL,
    )
    assert via_check == via_decide
    validate_detail(DetailType.STALLED, via_check.changes[0].detail)


def test_stale_marker_from_an_older_updated_at_does_not_suppress_the_stall() -> None:
    op = operation(S.PROCESSING, updated=600)
    state = tracked(op, stalled_for_updated_at=ts(0))
    assert not state.stall_reported
    decision = check_stall(
        state,
        account_sid=ACCOUNT_SID,
        observed_at=at(600 + STALL),
        now=at(600 + STALL),
        stall_after_seconds=STALL,
    )
    assert types(decision) == [DetailType.STALLED]


# --- keys and determinism --------------------------------------------------------------------------------


def test_same_observation_same_decision() -> None:
    before = tracked(operation(S.PROCESSING, updated=0, sent=1))
    after = operation(S.COMPLETED, updated=60, sent=5)
    assert run(before, after) == run(before, after)


def test_observed_at_is_not_part_of_the_key() -> None:
    before = tracked(operation(S.PROCESSING, updated=0, sent=1))
    after = operation(S.PROCESSING, updated=60, sent=5)
    first = run(before, after, observed_at=at(61))
    second = run(before, after, observed_at=at(3600))
    assert first.changes[0].event_key == second.changes[0].event_key
    assert first.changes[0].detail["observedAt"] != second.changes[0].detail["observedAt"]


def test_republished_status_change_keeps_its_key_for_a_newer_version() -> None:
    before = tracked(operation(S.PROCESSING, updated=0, delivered=1))
    first = run(before, operation(S.COMPLETED, updated=60, delivered=5))
    newer = run(before, operation(S.COMPLETED, updated=900, delivered=5, opened=3))
    assert first.changes[0].event_key == newer.changes[0].event_key


def test_stats_change_key_depends_on_the_version_not_on_the_previous_state() -> None:
    target = operation(S.PROCESSING, updated=120, sent=5)
    from_one = run(tracked(operation(S.PROCESSING, updated=0, sent=1)), target)
    from_two = run(tracked(operation(S.PROCESSING, updated=60, sent=2)), target)
    assert from_one.changes[0].event_key == from_two.changes[0].event_key
    other = run(
        tracked(operation(S.PROCESSING, updated=0, sent=1)), operation(S.PROCESSING, updated=120, sent=6)
    )
    assert other.changes[0].event_key != from_one.changes[0].event_key


def test_keys_differ_by_account_and_operation() -> None:
    op = operation(S.SCHEDULED)
    one = run(None, op, now=at(0))
    other_account = run(None, op, now=at(0), account_sid="AC" + "f" * 32)
    other_op = run(None, operation(S.SCHEDULED, op_id=OPERATION_ID + "x"), now=at(0))
    keys = {d.changes[0].event_key for d in (one, other_account, other_op)}
    assert len(keys) == 3


# --- tracked state ---------------------------------------------------------------------------------------


def test_tracked_operation_round_trips() -> None:
    op = operation(S.COMPLETED, updated=600, total=3, delivered=3)
    state = tracked(op, stalled_for_updated_at=op.updated_at)
    assert state.to_operation() == op
    assert TrackedOperation.model_validate(state.model_dump(mode="json")) == state
    assert TrackedOperation.model_validate_json(state.model_dump_json()) == state
    assert state.stall_reported
    with pytest.raises(ValidationError, match="frozen"):
        state.status = S.CANCELED  # type: ignore[misc]


def test_a_status_is_announced_under_one_key_whatever_the_previous_status() -> None:
    # After a crash and a stale read the same status can be decided against another previous status.
    completed = operation(S.COMPLETED, updated=600)
    from_nothing = run(None, completed)
    from_scheduled = run(tracked(operation(S.SCHEDULED, updated=0)), completed)
    from_processing = run(tracked(operation(S.PROCESSING, updated=300)), completed)
    keys = {d.changes[0].event_key for d in (from_nothing, from_scheduled, from_processing)}
    assert len(keys) == 1


def test_baseline_run_is_silent_also_for_an_operation_it_already_recorded() -> None:
    # A baseline run retried after a crash finds some operations already recorded: still no events.
    before = operation(S.PROCESSING, updated=0, sent=1)
    after = operation(S.COMPLETED, updated=60, sent=2)
    decision = run(tracked(before), after, now=at(STALL * 5), emit_first_sighting=False)
    assert decision.changes == []
    assert decision.new_state == tracked(after)
    stalled = run(tracked(before), before, now=at(STALL * 5), emit_first_sighting=False)
    assert stalled == Decision(changes=[], new_state=None)
    assert run(tracked(after), before, emit_first_sighting=False).stale


def test_state_of_another_operation_is_refused() -> None:
    other = tracked(operation(op_id=OPERATION_ID + "x"))
    with pytest.raises(ValueError, match="compared with"):
        run(other, operation())
