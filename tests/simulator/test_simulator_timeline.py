"""The lazy timeline model: state at any instant, versions, stalls, cancels, late opens, counting modes."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from comms_sim.timeline import (
    CANCELED,
    COMPLETED,
    PROCESSING,
    SCHEDULED,
    STAT_NAMES,
    Keyframe,
    KeyframeTimeline,
    OpState,
    SendPlan,
    Timeline,
    state_at,
)

OP_ID = "comms_operation_01h9krwprkeee8fzqspvwy6nq8"


def state_of(timeline: Timeline, t: int) -> OpState:
    """The state at ``t`` of a timeline that exists by then."""
    state = state_at(timeline, t)
    assert state is not None
    return state


def plan(**overrides: object) -> SendPlan:
    fields: dict[str, object] = {"id": OP_ID, "created": 0, "total": 1000, "duration": 300, "step": 30}
    fields.update(overrides)
    return SendPlan(**fields)  # type: ignore[arg-type]


def test_scheduled_then_processing_then_completed() -> None:
    send = plan(created=0, start=600, failed=100, opened=300)
    assert state_at(send, -1) is None
    scheduled = state_of(send, 599)
    assert scheduled.status == SCHEDULED
    assert scheduled.updated == 0
    assert scheduled.stats["scheduled"] == 1000
    assert scheduled.stats["queued"] == 0
    started = state_of(send, 600)
    assert (started.status, started.updated, started.stats["queued"]) == (PROCESSING, 600, 1000)
    halfway = state_of(send, 600 + 150)
    assert halfway.stats["queued"] == 500
    assert halfway.stats["failed"] == 50
    assert halfway.updated == 750
    done = state_of(send, 900)
    assert done.status == COMPLETED
    assert done.updated == 900
    assert done.stats["sent"] == 900
    assert done.stats["failed"] == 100
    assert done.stats["queued"] == 0


def test_updated_at_only_moves_when_something_changes() -> None:
    send = plan(total=3, duration=600, step=10)
    for t in range(0, 600, 10):
        state = state_of(send, t)
        previous = state_at(send, state.updated - 1) if state.updated > 0 else None
        assert previous is None or (previous.status, previous.stats) != (state.status, state.stats)
    assert len(send.versions()) == 4  # created with 0 processed, then 1, 2, 3 (completed)


def test_late_deliveries_and_opens_after_completion_move_updated_at() -> None:
    send = plan(late_delivered=40, opened=500, early_open_fraction=0.2, late=[60, 600, 3600])
    completed = state_of(send, 300)
    later = state_of(send, 300 + 3600)
    assert completed.status == later.status == COMPLETED
    assert later.stats["opened"] == 500
    assert completed.stats["opened"] == 100
    assert later.stats["delivered"] == completed.stats["delivered"] + 40
    assert later.updated == 300 + 3600
    assert state_at(send, 10 * 86400) == later


def test_cancel_while_scheduled_cancels_everything() -> None:
    send = plan(start=1200, cancel=600)
    state = state_of(send, 601)
    assert state.status == CANCELED
    assert state.updated == 600
    assert state.stats["canceled"] == 1000
    assert state.stats["scheduled"] == 0


def test_cancel_mid_processing_cancels_what_was_queued() -> None:
    send = plan(cancel=150)
    before = state_of(send, 149)
    after = state_of(send, 150)
    assert after.status == CANCELED
    assert before.status == PROCESSING
    # The tick at the cancel instant is processed first; whatever is still queued then is canceled.
    assert after.stats["canceled"] == 500
    assert after.stats["sent"] + after.stats["failed"] == 500
    assert after.stats["queued"] == 0
    assert send.versions()[-1].status == CANCELED


def test_stall_freezes_updated_at_then_resumes_shifted() -> None:
    send = plan(stall_at=90, stall_for=1800)
    frozen = [state_at(send, t) for t in (90, 500, 1889)]
    assert all(state is not None and state.updated == 90 and state.status == PROCESSING for state in frozen)
    resumed = state_of(send, 90 + 1800 + 30)
    assert resumed.updated == 120 + 1800
    done = state_of(send, 300 + 1800)
    assert done.status == COMPLETED


def test_stall_forever_stays_processing() -> None:
    send = plan(stall_at=120)
    state = state_of(send, 30 * 86400)
    assert (state.status, state.updated) == (PROCESSING, 120)
    assert send.versions()[-1].time == 120


def test_bucket_counting_puts_each_email_in_one_bucket() -> None:
    send = plan(failed=50, undelivered=20, late_delivered=10, opened=400, late=[60], counting="bucket")
    for t in (0, 100, 299, 300, 360):
        state = state_of(send, t)
        stats = state.stats
        buckets = ("queued", "sent", "scheduled", "delivered", "opened", "undelivered", "failed", "canceled")
        assert sum(stats[name] for name in buckets) == stats["total"]


@settings(max_examples=60, deadline=None)
@given(
    total=st.integers(0, 5000),
    shares=st.tuples(*(st.floats(0, 0.3) for _ in range(4))),
    wait=st.integers(0, 3000),
    duration=st.integers(1, 4000),
    step=st.integers(1, 900),
    late=st.lists(st.integers(1, 86400), max_size=5, unique=True),
    probe=st.lists(st.integers(-100, 200_000), min_size=1, max_size=20),
    counting=st.sampled_from(["cumulative", "bucket"]),
)
def test_state_at_agrees_with_versions(
    total: int,
    shares: tuple[float, float, float, float],
    wait: int,
    duration: int,
    step: int,
    late: list[int],
    probe: list[int],
    counting: str,
) -> None:
    failed, undelivered, late_delivered = (int(total * share) for share in shares[:3])
    opened = int((total - failed - undelivered) * shares[3])
    send = SendPlan(
        id=OP_ID,
        created=0,
        start=wait,
        total=total,
        duration=duration,
        step=step,
        failed=failed,
        undelivered=undelivered,
        late_delivered=late_delivered,
        opened=opened,
        late=late,
        counting=counting,  # type: ignore[arg-type]
    )
    versions = send.versions()
    times = [version.time for version in versions]
    assert times == sorted(times)
    assert send.final_time() >= times[-1]
    for t in probe:
        state = state_at(send, t)
        earlier = [version for version in versions if version.time <= t]
        if not earlier:
            assert state is None
            continue
        assert state is not None
        assert (state.status, dict(state.stats), state.updated) == (
            earlier[-1].status,
            dict(earlier[-1].stats),
            earlier[-1].time,
        )
        stats = state.stats
        assert list(stats) == list(STAT_NAMES)
        assert all(value >= 0 for value in stats.values())
        if counting == "cumulative":
            assert stats["opened"] <= stats["delivered"]
            assert stats["delivered"] + stats["undelivered"] <= stats["sent"]
            assert stats["sent"] + stats["failed"] + stats["queued"] + stats["scheduled"] == total


def test_cumulative_counters_never_decrease() -> None:
    send = plan(failed=30, undelivered=10, late_delivered=20, opened=600, late=[60, 120, 600])
    growing = ("attempts", "sent", "delivered", "opened", "undelivered", "failed")
    versions = send.versions()
    for before, after in itertools.pairwise(versions):
        assert all(after.stats[name] >= before.stats[name] for name in growing)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"failed": 800, "undelivered": 300}, "exceeds total"),
        ({"start": -5}, "start is before created"),
        ({"stall_at": 5000}, "stall_at"),
        ({"cancel": 400}, "after completion"),
        ({"late": [0]}, "late offsets"),
        ({"opened": 1001}, "opened"),
    ],
)
def test_invalid_plans_are_rejected(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan(**overrides)


def test_keyframes_are_output_verbatim_with_explicit_updated_at() -> None:
    frames = [
        Keyframe(at=10, status=SCHEDULED, stats={"total": 2, "scheduled": 2}),
        Keyframe(at=70, status=COMPLETED, stats={"total": 2, "delivered": 2}, updated=95),
    ]
    timeline = KeyframeTimeline(id=OP_ID, created=10, frames=frames)
    assert state_at(timeline, 9) is None
    first = state_of(timeline, 69)
    last = state_of(timeline, 10_000)
    assert (first.status, dict(first.stats), first.updated) == (SCHEDULED, {"total": 2, "scheduled": 2}, 10)
    assert (last.status, last.updated) == (COMPLETED, 95)
    with pytest.raises(ValueError, match="first version"):
        KeyframeTimeline(id=OP_ID, created=0, frames=frames)
