"""Issue 15's listing plan: follow-up slots staggered over their interval, the SCHEDULED listing skipped
only when it provably shows nothing new, and checkpoints of earlier versions still planned from (pure,
plus whole runs against the in-memory fakes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from comms_bridge.comms.models import OperationStatus, format_timestamp
from comms_bridge.poller.checkpoint import Checkpoint, bucket_counts, bucket_views, checkpoint_from_item
from comms_bridge.poller.discovery import (
    DEFAULT_CADENCE,
    HOUR,
    STAGGER_PAGES,
    BucketView,
    Cadence,
    bucket_id,
    bucket_start,
    due_buckets,
    pages,
    plan_ranges,
    recent_start,
    scheduled_listing_needed,
    slot_passed,
    stagger_block,
    window_buckets,
)
from tests.support.operation_factory import operation_id, ten_recipients
from tests.support.poller_fakes import PollerWorld

CADENCE = Cadence.parse(DEFAULT_CADENCE)
T0 = datetime(2026, 1, 5, 9, 0, 7, tzinfo=UTC)
LOOKBACK = timedelta(minutes=5)


# -- staggered slots --------------------------------------------------------------------------------------


def test_the_block_holds_about_three_pages_at_the_mean_count() -> None:
    assert stagger_block({}, 1000) == 1
    assert stagger_block({"a": 600, "b": 600, "c": None, "d": 0}, 1000) == 5
    assert stagger_block({"a": 6}, 1000) == 24  # never more than a day of hours
    assert stagger_block({"a": 50_000}, 1000) == 1
    assert STAGGER_PAGES == 3


@settings(max_examples=200, deadline=None)
@given(
    hours_ago=st.integers(min_value=2, max_value=7 * 24),
    elapsed=st.integers(min_value=0, max_value=3 * 3600),
    block=st.integers(min_value=1, max_value=24),
    minutes=st.integers(min_value=0, max_value=7 * 24 * 60),
)
def test_a_slot_never_delays_a_listing_and_never_comes_before_half_the_interval(
    hours_ago: int, elapsed: int, block: int, minutes: int
) -> None:
    """Property: a bucket whose interval has passed since its listing is due, whatever its slot; a bucket
    listed less than half its interval ago is not."""
    now = T0 + timedelta(minutes=minutes)
    bucket = bucket_id(now - timedelta(hours=hours_ago))
    refreshed = now - timedelta(seconds=elapsed)
    views = {b: BucketView(now, None) for b in window_buckets(now)}
    views[bucket] = BucketView(refreshed, None)
    due = due_buckets(now, CADENCE, views, limit=10, block=block)
    assert set(due) <= {bucket}
    if bucket_start(bucket) >= recent_start(now, CADENCE):
        assert due == []
        return
    interval = CADENCE.interval(now - (bucket_start(bucket) + HOUR))
    if now - refreshed >= interval:
        assert due == [bucket]
        assert slot_passed(bucket, refreshed, now, interval, block=block)
    if (now - refreshed) * 2 < interval:
        assert due == []


@settings(max_examples=8, deadline=None)
@given(
    per_bucket=st.sampled_from([6, 60, 600, 2_500]),
    period=st.sampled_from([1, 2, 5]),
    offset=st.integers(min_value=0, max_value=3599),
)
def test_every_bucket_gets_a_listing_within_its_cadence_as_runs_go_by(
    per_bucket: int, period: int, offset: int
) -> None:
    """Property over runs: planned with slots (due buckets, then ranges), every bucket older than the
    recent listing is listed again within its interval plus one schedule period, and every due bucket is
    in exactly one range."""
    start = T0 + timedelta(seconds=offset)
    views = {b: BucketView(start, None) for b in window_buckets(start)}
    counts: dict[str, int | None] = {b: per_bucket for b in window_buckets(start)}
    for minute in range(period, 130, period):
        now = start + timedelta(minutes=minute)
        window = _cover_recent(now, views, counts, per_bucket)
        for bucket in window:
            refreshed = views[bucket].refreshed
            assert refreshed is not None
            interval = CADENCE.interval(now - (bucket_start(bucket) + HOUR))
            assert now - refreshed <= interval + timedelta(minutes=period)
        due = due_buckets(now, CADENCE, views, limit=1000, block=stagger_block(counts, 1000))
        ranges = plan_ranges(due, views)
        listed = [b for r in ranges for b in r]
        assert sorted(listed) == sorted(due)
        for bucket in listed:
            views[bucket] = BucketView(now, None)


def _cover_recent(
    now: datetime, views: dict[str, BucketView], counts: dict[str, int | None], per_bucket: int
) -> list[str]:
    """What every run's recent listing does: list (and count) the buckets it covers. The window."""
    window = window_buckets(now)
    covered_from = recent_start(now, CADENCE)
    for bucket in window:
        counts.setdefault(bucket, per_bucket)
        if bucket_start(bucket) >= covered_from:
            views[bucket] = BucketView(now, None)
    return window


def _band_pages_per_run(per_bucket: int, *, staggered: bool, minutes: int = 180) -> list[int]:
    """Pages the bucket listings of each run cost, a run a minute after a bootstrap listed everything;
    the first hour (the bootstrap's own echo) is left out."""
    views = {b: BucketView(T0, None) for b in window_buckets(T0)}
    counts: dict[str, int | None] = {b: per_bucket for b in window_buckets(T0)}
    per_run: list[int] = []
    for minute in range(1, minutes + 1):
        now = T0 + timedelta(minutes=minute)
        _cover_recent(now, views, counts, per_bucket)
        block = stagger_block(counts, 1000) if staggered else 0
        due = due_buckets(now, CADENCE, views, limit=48, block=block)
        ranges = plan_ranges(due, views)
        per_run.append(sum(pages(sum(counts[b] or 0 for b in r), 1000) for r in ranges))
        for bucket in (b for r in ranges for b in r):
            views[bucket] = BucketView(now, None)
    return per_run[60:]


def test_slots_spread_the_hourly_band_over_the_hour_at_no_extra_cost() -> None:
    """A 100k window (600 operations an hour): unstaggered, the hourly band is ~30 pages on one run an
    hour; staggered, no run lists more than two blocks' worth, and the pages over two hours do not grow."""
    flat = _band_pages_per_run(600, staggered=False)
    spread = _band_pages_per_run(600, staggered=True)
    assert max(flat) >= 25
    assert max(spread) <= 2 * STAGGER_PAGES
    assert sum(spread) <= sum(flat)


# -- the SCHEDULED listing ----------------------------------------------------------------------------------


def _listed_after_their_end(now: datetime, *, minutes: int = 10) -> dict[str, BucketView]:
    """Every bucket of the window listed ``minutes`` ago or, for a bucket younger than that, at its end."""
    views = {}
    for bucket in window_buckets(now):
        end = bucket_start(bucket) + HOUR
        views[bucket] = BucketView(max(now - timedelta(minutes=minutes), end + LOOKBACK), None)
    return views


def test_the_scheduled_listing_is_needed_while_a_scheduled_operation_is_tracked() -> None:
    now = T0
    views = _listed_after_their_end(now)
    kwargs = {"recent_from": recent_start(now, CADENCE), "lookback": LOOKBACK}
    assert not scheduled_listing_needed(now, views, tracking_scheduled=False, **kwargs)
    assert scheduled_listing_needed(now, views, tracking_scheduled=True, **kwargs)


def test_the_scheduled_listing_is_needed_while_an_older_bucket_may_hold_an_unseen_operation() -> None:
    now = T0
    recent_from = recent_start(now, CADENCE)
    kwargs = {"recent_from": recent_from, "tracking_scheduled": False, "lookback": LOOKBACK}
    older = bucket_id(recent_from - HOUR)
    views = _listed_after_their_end(now)
    # Never listed (a bootstrap under way, or an outage longer than the window's youngest hours).
    assert scheduled_listing_needed(now, {**views, older: BucketView(None, None)}, **kwargs)
    assert scheduled_listing_needed(now, {b: v for b, v in views.items() if b != older}, **kwargs)
    # Listed, but before its hour ended plus the lookback: an operation created after may be unseen.
    end = bucket_start(older) + HOUR
    assert scheduled_listing_needed(now, {**views, older: BucketView(end + LOOKBACK / 2, None)}, **kwargs)
    assert not scheduled_listing_needed(now, {**views, older: BucketView(end + LOOKBACK, None)}, **kwargs)
    # Buckets the recent listing of this run covers are not the argument's: it lists them whole.
    young = bucket_id(recent_from)
    assert not scheduled_listing_needed(now, {**views, young: BucketView(None, None)}, **kwargs)


def _scheduled_listings(w: PollerWorld, since: int) -> int:
    return sum(1 for q in w.api.listings[since:] if q.get("status") == OperationStatus.SCHEDULED.value)


def test_a_run_skips_the_scheduled_listing_only_when_it_shows_nothing_new() -> None:
    w = PollerWorld(env={"PAGE_SIZE": "2"})
    w.api.put(
        ten_recipients(1, "PROCESSING", created=-5 * 3600, updated=-60, sent=4),
        ten_recipients(2, "COMPLETED", created=-3 * 24 * 3600, updated=-70 * 3600, sent=10),
    )
    w.run()  # the bootstrap lists every bucket, SCHEDULED included
    w.sink.drain()
    mark = len(w.api.listings)
    w.api.advance(60)
    summary = w.run()
    assert summary.scheduled_listing_skipped and _scheduled_listings(w, mark) == 0
    # An operation created SCHEDULED now is in the recent listing: seen on the next run all the same.
    w.api.put(ten_recipients(3, "SCHEDULED", created=60 + 30, updated=60 + 30))
    w.api.advance(60)
    summary = w.run()
    assert summary.scheduled_listing_skipped
    published = [(e.detail["operationId"], e.detail["status"]) for e in w.sink.drain()]
    assert published == [(operation_id(3), "SCHEDULED")]
    # Now one is tracked as SCHEDULED: the next runs list SCHEDULED again, and see it start.
    mark = len(w.api.listings)
    w.api.advance(60)
    summary = w.run()
    assert not summary.scheduled_listing_skipped and _scheduled_listings(w, mark) == 1
    w.api.advance(2 * 3600)  # long past the recent listing's reach
    w.api.put(ten_recipients(3, "PROCESSING", created=60 + 30, updated=180 + 2 * 3600, sent=1))
    w.run()
    published = [(e.detail["operationId"], e.detail["status"]) for e in w.sink.drain()]
    assert (operation_id(3), "PROCESSING") in published


def test_an_upgraded_stack_plans_from_a_checkpoint_of_the_previous_version() -> None:
    """The checkpoint item a stack wrote before slots and the skip existed loads unchanged, and both are
    planned from it: the state format did not change (a stack upgrades in place)."""
    doc = (
        '{"version":1,"bootstrapped":true,"seenThrough":"2026-01-05T08:59:07Z",'
        '"lastRunAt":"2026-01-05T08:59:07Z","buckets":{'
        + ",".join(
            f'"{b}":{{"r":"{format_timestamp(T0 - timedelta(minutes=1))}","n":600}}'
            for b in window_buckets(T0)
            if bucket_start(b) + HOUR + LOOKBACK <= T0 - timedelta(minutes=1)
        )
        + '},"recent":{"2026-01-05T08:58":"AAAAAAAAAAAA"}}'
    )
    checkpoint = checkpoint_from_item({"doc": {"S": doc}})
    assert isinstance(checkpoint, Checkpoint) and checkpoint.bootstrapped
    assert stagger_block(bucket_counts(checkpoint.buckets), 1000) == 5
    assert not scheduled_listing_needed(
        T0,
        bucket_views(checkpoint.buckets),
        recent_from=recent_start(T0, CADENCE),
        tracking_scheduled=False,
        lookback=LOOKBACK,
    )
