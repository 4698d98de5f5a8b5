"""What the poller believes of the API (contract §6), in whole runs against the in-memory fakes: a ``Date``
too far from the local clock advances nothing (lease, watermark, checkpoint) and is counted; an operation
dated later than the API's clock allows is skipped, counted and never stored. The same stories against the
simulator and moto are in tests/product/integration/test_poller_trust_http.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from comms_bridge.comms.exceptions import CommsServerError
from comms_bridge.comms.models import format_timestamp, parse_timestamp
from comms_bridge.poller.checkpoint import BucketState, Checkpoint, drop_future_times
from comms_bridge.poller.lease import max_lease_ahead
from tests.product.unit.test_poller_run import HOUR, STATUS, bootstrap_world, events, op, step
from tests.support.operation_factory import at, operation_id
from tests.support.poller_fakes import MemoryLease

YEAR_2099 = datetime(2099, 1, 1, tzinfo=UTC)


def metric(w, name: str) -> list[float]:
    return [value for metric_name, value in w.metrics if metric_name == name]


def test_a_2099_date_advances_nothing_and_delays_nothing() -> None:
    w = bootstrap_world()
    w.run()
    checkpoint = w.store.checkpoint
    w.api.put(op(5, "PROCESSING", created=30, updated=40, sent=1))  # new since the bootstrap
    w.api.date = YEAR_2099
    w.metrics.clear()
    bad = step(w)
    assert bad["status"] == "partial" and bad["stopped_reason"] == "API clock distrusted"
    assert bad["clock_skew_detected"] == 1 and bad["comms_requests"] == 1
    assert events(w) == []
    assert w.store.checkpoint == checkpoint, "nothing advanced with the 2099 Date"
    assert w.store.lease_owner is None, "no lease taken with the 2099 Date"
    assert metric(w, "ClockSkewDetected") == [1]
    # No lag reported: CheckpointLagAlarm treats the missing datapoint as breaching.
    assert metric(w, "CheckpointLagSeconds") == []
    w.api.date = None
    good = step(w)
    assert good["status"] == "complete" and good["clock_skew_detected"] == 0
    assert events(w) == [(STATUS, operation_id(5), "PROCESSING")], "published by the very next run"
    assert w.store.checkpoint is not None
    assert w.store.checkpoint.seen_through == format_timestamp(at(120))


def test_a_date_in_the_past_is_distrusted_too() -> None:
    w = bootstrap_world()
    w.run()
    w.api.date = at(-2 * HOUR)
    assert step(w)["stopped_reason"] == "API clock distrusted"
    w.api.date = at(120 - 50 * 60)  # 50 minutes off: within MAX_CLOCK_SKEW_SECONDS (3600)
    assert step(w)["status"] == "complete"


def test_the_bound_is_max_clock_skew_seconds() -> None:
    w = bootstrap_world(MAX_CLOCK_SKEW_SECONDS="600")
    w.run()
    w.api.date = at(60 + 11 * 60)
    assert step(w)["clock_skew_detected"] == 1


def test_a_distrusted_date_later_in_the_run_is_ignored() -> None:
    w = bootstrap_world()
    w.run()
    w.api.put(op(4, "COMPLETED", created=-10 * 60, updated=30, sent=10))
    w.api.dates = [None, YEAR_2099, YEAR_2099]  # the first answer is sound, the next two are not
    summary = step(w)
    assert summary["status"] == "complete" and summary["clock_skew_detected"] == 2
    (event,) = w.sink.drain()
    assert event.detail["observedAt"] == format_timestamp(at(60)), "observed on the trusted clock"
    assert w.store.checkpoint is not None
    assert w.store.checkpoint.seen_through == format_timestamp(at(60))
    assert w.store.checkpoint.last_run_at == format_timestamp(at(60))


def test_a_checkpoint_written_with_a_2099_date_is_repaired() -> None:
    """What an earlier version left after a 2099 Date: every watermark in 2099."""
    w = bootstrap_world()
    w.run()
    assert w.store.checkpoint is not None
    poisoned = format_timestamp(YEAR_2099)
    w.store.checkpoint = w.store.checkpoint.model_copy(
        update={
            "seen_through": poisoned,
            "last_run_at": poisoned,
            "buckets": {
                b: s.model_copy(update={"refreshed": poisoned}) for b, s in w.store.checkpoint.buckets.items()
            },
        }
    )
    w.api.put(op(5, "PROCESSING", created=30, updated=40, sent=1))
    summary = step(w)
    assert summary["clock_skew_detected"] > 1
    assert events(w) == [(STATUS, operation_id(5), "PROCESSING")]
    stored = w.store.checkpoint
    assert stored is not None and stored.seen_through == format_timestamp(at(60))
    times = [stored.seen_through, stored.last_run_at, *(s.refreshed for s in stored.buckets.values())]
    assert all(parse_timestamp(t) <= at(60) for t in times if t is not None)


def test_drop_future_times_keeps_a_sound_checkpoint_as_it_is() -> None:
    sound = Checkpoint(
        seen_through=format_timestamp(at(0)),
        buckets={"2024-06-20T09": BucketState(refreshed=format_timestamp(at(0)))},
        recent={"2024-06-20T09:59": "abcdefghijkl"},
    )
    assert drop_future_times(sound, at(3600)) == (sound, 0)
    later = sound.model_copy(
        update={
            "buckets": {**sound.buckets, "2099-01-01T00": BucketState(refreshed=format_timestamp(YEAR_2099))},
            "recent": {**sound.recent, "2099-01-01T00:00": "mnopqrstuvwx"},
        }
    )
    repaired, dropped = drop_future_times(later, at(3600))
    assert dropped == 2 and repaired == sound


def test_a_lease_reaching_beyond_any_run_counts_as_lapsed() -> None:
    w = bootstrap_world()
    w.run()
    stuck = MemoryLease(w.store, owner="written-with-a-2099-date")
    assert stuck.acquire(YEAR_2099, 900) is not None
    assert step(w)["status"] == "complete", "taken over: no run could have taken that lease"
    live = MemoryLease(w.store, owner="a-live-run")
    assert live.acquire(w.api.now() + timedelta(seconds=max_lease_ahead(3600) - 1000), 900) is not None
    assert step(w)["status"] == "contended", "a lease a real run could hold is respected"


# -- far-future updatedAt --------------------------------------------------------------------------------


def test_a_far_future_version_is_skipped_and_never_stored() -> None:
    w = bootstrap_world()
    w.run()
    before = w.store.states[operation_id(4)]
    w.api.put(op(4, "PROCESSING", created=-10 * 60, updated=8 * 24 * HOUR, sent=5))  # updatedAt in 8 days
    w.metrics.clear()
    summary = step(w)
    # Skipped in each listing that showed it (the PROCESSING one and the recent one).
    assert summary["skipped_malformed"] >= 1 and events(w) == []
    assert metric(w, "SkippedMalformedItems") == [summary["skipped_malformed"]]
    assert w.store.states[operation_id(4)] == before, "never stored"
    w.api.put(op(4, "COMPLETED", created=-10 * 60, updated=150, sent=10))  # the real next version
    step(w)
    assert events(w) == [(STATUS, operation_id(4), "COMPLETED")], "not taken for older than the bogus one"


def test_a_far_future_departure_is_skipped_and_fetched_again() -> None:
    w = bootstrap_world()
    w.run()
    # Operation 1 (created 5 hours ago) leaves the active set; its bucket is not due: it is fetched.
    w.api.put(op(1, "COMPLETED", created=-5 * HOUR, updated=8 * 24 * HOUR, sent=10))
    summary = step(w)
    assert summary["fetched"] == 0 and summary["skipped_malformed"] == 1 and events(w) == []
    assert summary["status"] == "complete"
    w.api.put(op(1, "COMPLETED", created=-5 * HOUR, updated=150, sent=10))
    again = step(w)
    assert again["fetched"] == 1 and events(w) == [(STATUS, operation_id(1), "COMPLETED")]


def test_a_version_just_within_the_bound_is_accepted() -> None:
    w = bootstrap_world()
    w.run()
    w.api.put(op(4, "COMPLETED", created=-10 * 60, updated=60 + 3500, sent=10))
    step(w)
    assert events(w) == [(STATUS, operation_id(4), "COMPLETED")]


def test_a_checkpoint_ahead_of_the_api_clock_shows_as_negative_lag() -> None:
    """Before: the lag was clamped at 0, so a checkpoint ahead of the API's clock looked perfectly fresh."""
    w = bootstrap_world()
    w.run()
    assert w.store.checkpoint is not None
    ahead = format_timestamp(at(60 + 30 * 60))  # 30 minutes ahead: within MAX_CLOCK_SKEW_SECONDS
    w.store.checkpoint = w.store.checkpoint.model_copy(update={"seen_through": ahead})
    w.api.failures.append(["list_operations", 1, CommsServerError("HTTP 500")])  # the run keeps seen_through
    summary = step(w)
    assert summary["status"] != "complete" and summary["checkpoint_lag_seconds"] == -30 * 60
