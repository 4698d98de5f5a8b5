"""Whole poller runs against in-memory fakes of the ports (tests/support/poller_fakes.py): the
guarantees of contract §3 and §4 in milliseconds. The same stories against the simulator and moto server
are in tests/product/integration/test_poller_*.py."""

from __future__ import annotations

from typing import Any

import pytest

from comms_bridge.aws.eventbridge import OutgoingEvent
from comms_bridge.comms.exceptions import CommsServerError
from comms_bridge.comms.models import OperationStatus, format_timestamp
from comms_bridge.poller.checkpoint import Checkpoint
from comms_bridge.poller.exceptions import CheckpointConflict, StateStoreError
from comms_bridge.poller.summary import RunStatus
from tests.support.operation_factory import at, operation_id
from tests.support.operation_factory import ten_recipients as op
from tests.support.poller_fakes import FakeContext, MemoryLease, PollerWorld

HOUR = 3600
STATUS = "Email Operation Status Changed"
STATS = "Email Operation Stats Changed"
STALLED = "Email Operation Stalled"


def world(**env: str) -> PollerWorld:
    # Pages of 2: a listing of a few operations spans pages, and buckets ride along only when empty.
    return PollerWorld(env={"PAGE_SIZE": "2", **env})


def events(w: PollerWorld) -> list[tuple[str, str, str | None]]:
    """(detail-type, operation, status) of the events published since the last call."""
    return [(e.detail_type, e.detail["operationId"], e.detail["status"]) for e in w.sink.drain()]


def step(w: PollerWorld, seconds: int = 60, **kwargs: Any) -> dict[str, Any]:
    w.api.advance(seconds)
    return w.run(**kwargs).as_dict()


def assert_published_before_stored(w: PollerWorld) -> None:
    """Every state write of an operation comes after the events of that operation (contract §4)."""
    entries = w.journal.entries
    published_by_op: dict[str, int] = {}
    keys = {e.event_key: e.detail["operationId"] for e in w.sink.events}
    for position, (kind, value) in enumerate(entries):
        if kind == "publish" and value in keys:
            published_by_op[keys[value]] = position
        if kind == "write" and value in published_by_op:
            assert published_by_op[value] < position


# -- bootstrap -------------------------------------------------------------------------------------------


def bootstrap_world(**env: str) -> PollerWorld:
    w = world(**env)
    w.api.put(
        op(1, "PROCESSING", created=-5 * HOUR, updated=-60, sent=4),
        op(2, "SCHEDULED", created=-30 * 60, updated=-30 * 60),
        op(3, "COMPLETED", created=-3 * 24 * HOUR, updated=-70 * HOUR, sent=10),
        op(4, "PROCESSING", created=-10 * 60, updated=-10, sent=1),
    )
    return w


def test_a_baseline_bootstrap_records_everything_silently() -> None:
    w = bootstrap_world()
    summary = w.run().as_dict()
    assert summary["status"] == "complete" and summary["bootstrapped"]
    assert events(w) == []
    assert set(w.store.states) == {operation_id(n) for n in (1, 2, 3, 4)}
    assert set(w.store.index) == {operation_id(n) for n in (1, 2, 4)}
    assert w.store.checkpoint is not None and w.store.checkpoint.seen_through == format_timestamp(at(0))
    # Nothing changed: the next run publishes nothing and reads no state.
    again = step(w)
    assert events(w) == [] and again["changes_detected"] == 0
    assert "BatchGetItem" not in again["dynamodb_calls"]


def test_an_emit_bootstrap_reports_every_operation_as_a_first_sighting() -> None:
    w = bootstrap_world(BOOTSTRAP_MODE="emit")
    w.run()
    published = w.sink.drain()
    assert sorted((e.detail["operationId"], e.detail["previousStatus"]) for e in published) == [
        (operation_id(n), None) for n in (1, 2, 3, 4)
    ]
    assert {e.detail_type for e in published} == {STATUS}
    assert_published_before_stored(w)


# -- changes ---------------------------------------------------------------------------------------------


def test_a_status_change_is_published_once_then_stored() -> None:
    w = bootstrap_world()
    w.run()
    w.api.put(op(4, "COMPLETED", created=-10 * 60, updated=30, sent=10))
    summary = step(w)
    assert events(w) == [(STATUS, operation_id(4), "COMPLETED")]
    assert summary["events_published"] == summary["states_written"] == 1
    assert w.store.states[operation_id(4)].status is OperationStatus.COMPLETED
    assert operation_id(4) not in w.store.index
    assert_published_before_stored(w)
    step(w)
    assert events(w) == []


def test_stats_keep_being_reported_after_completion() -> None:
    w = bootstrap_world()
    w.run()
    w.api.put(op(4, "COMPLETED", created=-10 * 60, updated=30, sent=10))
    step(w)
    assert events(w) == [(STATUS, operation_id(4), "COMPLETED")]
    w.api.put(op(4, "COMPLETED", created=-10 * 60, updated=90, sent=10, opened=3))  # late opens
    step(w)
    assert events(w) == [(STATS, operation_id(4), "COMPLETED")]
    step(w)
    assert events(w) == []


def test_an_older_bucket_is_followed_up_on_its_cadence() -> None:
    w = world()
    w.api.put(
        op(1, "COMPLETED", created=-3 * HOUR, updated=-2 * HOUR, sent=10),
        # A full page in the recent window: operation 1's bucket cannot ride along for free.
        op(2, "PROCESSING", created=-10 * 60, updated=-10, sent=1),
        op(3, "PROCESSING", created=-5 * 60, updated=-10, sent=1),
    )
    w.run()
    w.api.put(op(1, "COMPLETED", created=-3 * HOUR, updated=120, sent=10, opened=2))
    seen_at = []
    for minute in range(1, 17):
        step(w)
        if events(w):
            seen_at.append(minute)
    # 15 minutes for buckets of 1-24 hours (DEFAULT_CADENCE): once, at the bucket's slot, which comes
    # round after half the interval at the earliest and after the whole interval at the latest.
    assert len(seen_at) == 1 and 8 <= seen_at[0] <= 15


def test_a_stall_is_reported_once_and_re_armed_when_the_operation_moves() -> None:
    w = world(STALL_AFTER_SECONDS="600")
    w.api.put(op(1, "PROCESSING", created=-20 * 60, updated=-60, sent=2))
    w.run()
    step(w, 9 * 60)
    assert events(w) == [(STALLED, operation_id(1), "PROCESSING")]
    step(w)
    assert events(w) == []
    w.api.put(op(1, "PROCESSING", created=-20 * 60, updated=11 * 60, sent=5))
    step(w)
    assert events(w) == [(STATS, operation_id(1), "PROCESSING")]
    step(w, 9 * 60)
    assert events(w) == []
    step(w, 60)
    assert events(w) == [(STALLED, operation_id(1), "PROCESSING")]


# -- departures ------------------------------------------------------------------------------------------


def departure_world() -> PollerWorld:
    w = world()
    w.api.put(
        op(1, "PROCESSING", created=-5 * HOUR, updated=-60, sent=2),
        op(2, "PROCESSING", created=-5 * HOUR + 60, updated=-60, sent=2),
        op(3, "PROCESSING", created=-9 * HOUR, updated=-60, sent=2),
        op(4, "PROCESSING", created=-10 * 60, updated=-10, sent=1),
    )
    w.run()
    return w


def test_a_lone_departure_is_fetched() -> None:
    w = departure_world()
    w.api.put(op(3, "COMPLETED", created=-9 * HOUR, updated=30, sent=10))
    summary = step(w)
    assert events(w) == [(STATUS, operation_id(3), "COMPLETED")]
    assert summary["departures"] == summary["fetched"] == 1
    assert summary["requests_by_listing"]["fetch"] == 1 and summary["requests_by_listing"]["buckets"] == 0


def test_departures_sharing_a_bucket_are_found_by_listing_it() -> None:
    w = departure_world()
    w.api.put(
        op(1, "COMPLETED", created=-5 * HOUR, updated=30, sent=10),
        op(2, "COMPLETED", created=-5 * HOUR + 60, updated=30, sent=10),
    )
    summary = step(w)
    assert sorted(events(w)) == [(STATUS, operation_id(n), "COMPLETED") for n in (1, 2)]
    assert summary["departures"] == 2 and summary["fetched"] == 0
    assert summary["requests_by_listing"]["fetch"] == 0 and summary["requests_by_listing"]["buckets"] >= 1


def test_a_departure_past_retention_is_forgotten_without_an_event() -> None:
    w = world()
    w.api.put(
        op(1, "PROCESSING", created=-7 * 24 * HOUR + 600, updated=-60, sent=2),
        op(2, "PROCESSING", created=-10 * 60, updated=-10, sent=1),
    )
    w.run()
    summary = step(w, 15 * 60)  # operation 1 is now older than Twilio keeps: the API answers 404
    assert summary["departures"] == summary["retention_dropped"] == 1
    assert summary["requests_by_listing"]["fetch"] == 1
    assert events(w) == []
    assert operation_id(1) not in w.store.states and operation_id(1) not in w.store.index
    assert ("RetentionDropped", 1) in w.metrics
    assert step(w)["departures"] == 0


# -- failures --------------------------------------------------------------------------------------------


def test_a_refused_event_keeps_the_state_and_the_watermark_then_republishes_the_same_key() -> None:
    w = bootstrap_world()
    w.run()
    seen_before = w.store.checkpoint.seen_through if w.store.checkpoint else None
    w.api.put(
        op(4, "COMPLETED", created=-10 * 60, updated=30, sent=10),
        op(2, "PROCESSING", created=-30 * 60, updated=30, sent=1),
    )
    refused: list[str] = []

    def refuse(event: OutgoingEvent) -> bool:
        if event.detail["operationId"] == operation_id(4):
            refused.append(event.event_key)
            return True
        return False

    w.sink.refuse = refuse
    failed = step(w)
    assert failed["status"] == "partial" and failed["publish_failures"] == 1
    assert events(w) == [(STATUS, operation_id(2), "PROCESSING")]
    # The completion was claimed before publishing; its claim, released, owes the refused event.
    owed = w.store.states[operation_id(4)]
    assert owed.status is OperationStatus.COMPLETED and owed.claim is not None and owed.claim.until == 0
    assert w.store.states[operation_id(2)].status is OperationStatus.PROCESSING
    assert w.store.checkpoint is not None and w.store.checkpoint.seen_through == seen_before
    w.sink.refuse = lambda event: False
    recovered = step(w)
    assert recovered["status"] == "complete"
    assert [(e.detail["operationId"], e.event_key) for e in w.sink.drain()] == [(operation_id(4), refused[0])]
    assert w.store.checkpoint.seen_through == format_timestamp(at(120))


def test_a_failed_state_write_publishes_nothing_and_the_next_run_publishes_once() -> None:
    w = bootstrap_world()
    w.run()
    w.api.put(op(4, "COMPLETED", created=-10 * 60, updated=30, sent=10))
    w.store.fail_writes = True
    w.api.advance(60)
    with pytest.raises(StateStoreError):
        w.run()
    assert w.sink.drain() == [] and w.store.lease_owner is None, "the failed run released its lease"
    w.store.fail_writes = False
    step(w)
    assert [e.detail["status"] for e in w.sink.drain()] == ["COMPLETED"]


def test_a_crash_after_publishing_republishes_identical_keys_once_the_claim_lapses() -> None:
    w = bootstrap_world()
    w.run()
    w.api.put(op(4, "COMPLETED", created=-10 * 60, updated=30, sent=10))
    w.store.fail_settles = True
    w.api.advance(60)
    with pytest.raises(StateStoreError):
        w.run(FakeContext(60_000))
    first = [e.event_key for e in w.sink.drain()]
    assert len(first) == 1 and w.store.states[operation_id(4)].claim is not None
    w.store.fail_settles = False
    w.wall.now += 60 + 30  # the crashed invocation's deadline and the claim margin
    assert step(w)["claims_recovered"] == 1
    assert [e.event_key for e in w.sink.drain()] == first, "its events again, under the same keys"
    assert w.store.states[operation_id(4)].claim is None


def test_a_failed_listing_keeps_the_watermark_and_the_next_run_catches_up() -> None:
    w = bootstrap_world()
    w.run()
    w.api.put(op(4, "COMPLETED", created=-10 * 60, updated=30, sent=10))
    w.api.fail_next("list_operations")  # the PROCESSING listing: no API clock, the run stops at once
    first = step(w)
    assert first["status"] == "failed" and first["comms_requests"] == 1
    w.api.fail_next("list_operations", after=1)  # the SCHEDULED listing: the rest stays unknown
    second = step(w)
    assert second["status"] == "partial" and second["errors"]
    assert events(w) == []
    assert w.store.checkpoint is not None and w.store.checkpoint.seen_through == format_timestamp(at(0))
    third = step(w)
    assert third["status"] == "complete"
    assert events(w) == [(STATUS, operation_id(4), "COMPLETED")]


def test_a_malformed_item_is_skipped_counted_and_not_lost() -> None:
    w = bootstrap_world()
    w.run()
    w.api.put(
        op(4, "COMPLETED", created=-10 * 60, updated=30, sent=10),
        op(5, "COMPLETED", created=-20 * 60, updated=20, sent=10),
    )
    w.api.corrupt(operation_id(5))
    summary = step(w)
    assert summary["status"] == "complete" and summary["skipped_malformed"] == 1
    assert events(w) == [(STATUS, operation_id(4), "COMPLETED")]
    # The listing with the malformed item is not "seen through": the next run lists it again.
    assert w.store.checkpoint is not None and w.store.checkpoint.seen_through == format_timestamp(at(0))
    again = step(w)
    assert again["skipped_malformed"] == 0
    assert events(w) == [(STATUS, operation_id(5), "COMPLETED")]


# -- lease and time --------------------------------------------------------------------------------------


def test_a_contended_run_exits_after_one_request_without_publishing() -> None:
    w = bootstrap_world()
    w.run()
    w.api.put(op(4, "COMPLETED", created=-10 * 60, updated=30, sent=10))
    w.api.advance(60)
    other = MemoryLease(w.store, owner="another-run")
    assert other.acquire(w.api.now(), 900) is not None
    before = w.store.checkpoint
    summary = w.run().as_dict()
    assert summary["status"] == "contended" and summary["comms_requests"] == 1
    assert events(w) == [] and w.store.checkpoint == before
    assert w.store.lease_owner == "another-run", "the holder's lease is left alone"
    assert ("LeaseContended", 1) in w.metrics


def test_the_checkpoint_is_written_only_while_holding_the_lease() -> None:
    class LapsingLease(MemoryLease):
        """Taken, then lapsed and taken over by another run while this one works."""

        def acquire(self, now: Any, seconds: float) -> Checkpoint | None:
            checkpoint = super().acquire(now, seconds)
            self.store.lease_owner = "the-next-run"
            return checkpoint

    w = bootstrap_world()
    w.run()
    before = w.store.checkpoint
    w.api.put(op(4, "COMPLETED", created=-10 * 60, updated=30, sent=10))
    w.api.advance(60)
    with pytest.raises(CheckpointConflict):
        w.run(lease=LapsingLease(w.store))
    assert w.store.checkpoint == before
    assert w.store.lease_owner == "the-next-run"
    assert w.journal.of("checkpoint")[-1] != "the-next-run"


def test_no_time_to_start_means_no_request() -> None:
    w = bootstrap_world()
    summary = w.run(FakeContext(5_000)).as_dict()  # below POLLER_SAFETY_MARGIN_SECONDS (10 s)
    assert summary["status"] == "partial" and summary["stopped_reason"] == "time budget"
    assert summary["comms_requests"] == 0 and w.store.checkpoint is None


def test_a_run_out_of_time_stops_cleanly_and_the_next_one_carries_on() -> None:
    w = bootstrap_world()
    asked = {"n": 0}

    def remaining() -> int:
        asked["n"] += 1
        return 60_000 if asked["n"] <= 8 else 3_000

    short = w.run(FakeContext(remaining)).as_dict()
    assert short["stopped_reason"] == "time budget" and short["buckets_due_left"] > 0
    assert not short["bootstrapped"] and events(w) == []
    # Every request was given the time left minus the margin as its deadline.
    assert w.api.deadlines[0] == 50.0
    full = step(w, 60, context=FakeContext(60_000))
    assert full["status"] == "complete" and full["bootstrapped"]
    assert events(w) == [], "a baseline bootstrap stays silent however many runs it takes"
    assert set(w.store.states) == {operation_id(n) for n in (1, 2, 3, 4)}


def test_a_run_summary_status_is_an_enum_reported_as_text() -> None:
    w = bootstrap_world()
    summary = w.run()
    assert summary.status is RunStatus.COMPLETE
    assert type(summary.as_dict()["status"]) is str


def test_metrics_count_an_incomplete_run() -> None:
    w = bootstrap_world()
    w.api.fail_next("list_operations", CommsServerError("HTTP 500"))
    assert w.run().status is RunStatus.FAILED
    assert ("IncompleteRuns", 1) in w.metrics


def dense_world(per_hour: int, hours: int) -> PollerWorld:
    """``per_hour`` completed operations in each of the last ``hours`` (ending 2 h ago): a never-listed
    day of them takes more pages than one short invocation can list."""
    w = world()
    n = 0
    for hour in range(2, 2 + hours):
        for k in range(per_hour):
            n += 1
            created = -hour * HOUR - 60 * (k + 1)
            w.api.put(op(n, "COMPLETED", created=created, updated=created + 600, sent=10))
    return w


def request_budget(w: PollerWorld, requests: int) -> FakeContext:
    """A context whose time runs out once the run made ``requests`` Comms requests."""
    start = w.api.request_count
    return FakeContext(lambda: 60_000 if w.api.request_count - start < requests else 3_000)


def test_a_bootstrap_narrows_listings_that_do_not_fit_an_invocation_and_finishes() -> None:
    # 6 hours of 6 operations at 2 per page: a day-wide listing of them is 18 pages, an hour 3.
    w = dense_world(per_hour=6, hours=6)
    spans: list[int | None] = []
    for _ in range(30):
        summary = w.run(request_budget(w, 6)).as_dict()
        assert w.store.checkpoint is not None
        spans.append(w.store.checkpoint.bootstrap_range)
        if summary["bootstrapped"]:
            break
        w.api.advance(60)
    assert summary["bootstrapped"], f"no bootstrap after 30 runs; spans {spans}"
    narrowed = [span for span in spans if span is not None]
    assert narrowed and narrowed[0] < 24, "the day-wide listing ran out of time: narrowed"
    assert narrowed == sorted(narrowed, reverse=True) and narrowed[-1] == 1
    assert spans[-1] is None, "a finished bootstrap keeps no span"
    assert events(w) == []
    assert len(w.store.states) == 36


def test_a_listing_that_fails_or_spans_listed_buckets_does_not_narrow() -> None:
    from comms_bridge.poller.discovery import BucketView, narrowed_bootstrap_range  # noqa: PLC0415
    from comms_bridge.poller.summary import RunSummary  # noqa: PLC0415

    out_of_time = RunSummary(stopped_reason="time budget")
    group = ["2026-01-05T01", "2026-01-05T02", "2026-01-05T03"]
    assert narrowed_bootstrap_range(group, {}, out_of_time) == 1
    assert narrowed_bootstrap_range(group[:1], {}, out_of_time) is None
    assert narrowed_bootstrap_range(group, {}, RunSummary()) is None, "a failed listing is retried as it was"
    listed = {group[0]: BucketView(at(0), None)}
    assert narrowed_bootstrap_range(group, listed, out_of_time) is None
    assert Checkpoint.model_validate({"bootstrapRange": 3}).bootstrap_range == 3
