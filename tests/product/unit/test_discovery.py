"""Discovery planning: cadence, hour buckets, due buckets, candidates, listing ranges (pure)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from comms_bridge.comms.models import format_timestamp
from comms_bridge.poller.checkpoint import BucketState, Checkpoint, next_checkpoint
from comms_bridge.poller.config import PollerConfig
from comms_bridge.poller.discovery import (
    RECENT_KEY_CHARS,
    RECENT_MAX_ENTRIES,
    BucketView,
    Cadence,
    RecentListing,
    RecentVersions,
    bucket_id,
    bucket_start,
    due_buckets,
    extend_recent,
    is_candidate,
    parse_duration,
    plan_due,
    plan_ranges,
    plan_recent,
    recent_key,
    recent_start,
    trim_stored_recent,
    window_buckets,
)
from comms_bridge.settings import SettingsError

NOW = datetime(2026, 11, 27, 13, 20, 5, tzinfo=UTC)
CADENCE = Cadence.parse("1h:0,24h:15m,7d:1h")


def test_parse_duration_units() -> None:
    assert parse_duration("90") == timedelta(seconds=90)
    assert parse_duration("15m") == timedelta(minutes=15)
    assert parse_duration("7d") == timedelta(days=7)
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")


@pytest.mark.parametrize("text", ["1h:0,24h:15m,7d:1h", "1h=every,24h=15m,7d=1h"])
def test_cadence_both_notations(text: str) -> None:
    cadence = Cadence.parse(text)
    assert cadence.recent_window == timedelta(hours=1)
    assert cadence.interval(timedelta(minutes=30)) == timedelta(0)
    assert cadence.interval(timedelta(hours=2)) == timedelta(minutes=15)
    assert cadence.interval(timedelta(days=3)) == timedelta(hours=1)
    assert cadence.interval(timedelta(days=30)) == timedelta(hours=1)


@pytest.mark.parametrize(
    "text", ["", "24h:15m,1h:0", "1h:15m,24h:1h", "30m:0,24h:15m", "1h:0,24h:0", "1h:0,1h:5m", "x:y"]
)
def test_cadence_rejects_bad_configs(text: str) -> None:
    with pytest.raises(ValueError):
        Cadence.parse(text)


def test_config_from_env_validates() -> None:
    config = PollerConfig.from_env({"FOLLOW_UP_CADENCE": "2h=every,1d=10m,7d=2h"})
    assert config.cadence.recent_window == timedelta(hours=2)
    assert config.lookback == timedelta(seconds=300)
    with pytest.raises(SettingsError, match="PAGE_SIZE"):
        PollerConfig.from_env({"PAGE_SIZE": "5000"})
    with pytest.raises(SettingsError, match="FOLLOW_UP_CADENCE"):
        PollerConfig.from_env({"FOLLOW_UP_CADENCE": "nonsense"})


def test_an_invalid_variable_is_named_once_without_pydantic_wording() -> None:
    with pytest.raises(SettingsError) as caught:
        PollerConfig.from_env({"FOLLOW_UP_CADENCE": "30m:0,24h:15m"})
    assert str(caught.value) == (
        "invalid environment: FOLLOW_UP_CADENCE: must start with an every-run band of at least 1h (e.g. 1h:0)"
    )
    with pytest.raises(SettingsError) as caught:
        PollerConfig.from_env(
            {"PAGE_SIZE": "0", "COMMS_API_BASE_URL": "http://example.com", "LEASE_SECONDS": "x"}
        )
    message = str(caught.value)
    assert message.startswith("invalid environment: COMMS_API_BASE_URL: must be an https:// URL")
    assert "PAGE_SIZE: must be at least 1" in message
    assert "LEASE_SECONDS: must be a whole number" in message
    assert "Input should be" not in message
    assert all(message.count(name) == 1 for name in ("COMMS_API_BASE_URL", "PAGE_SIZE", "LEASE_SECONDS"))
    assert "Value error" not in message


def test_config_defaults_are_the_documented_ones() -> None:
    config = PollerConfig.from_env({})
    assert (config.lookback, config.page_size, config.lease_seconds) == (timedelta(seconds=300), 1000, 900)
    assert (config.safety_margin_seconds, config.max_buckets_per_run, config.flush_operations) == (
        10.0,
        48,
        500,
    )
    assert config.read_timeout_seconds == 10.0 and config.cadence == Cadence.parse("1h:0,24h:15m,7d:1h")
    assert (config.stall_after_seconds, config.bootstrap_mode.value) == (1800, "baseline")


def test_buckets_are_absolute_hours() -> None:
    assert bucket_id(NOW) == "2026-11-27T13"
    assert bucket_start("2026-11-27T13") == datetime(2026, 11, 27, 13, tzinfo=UTC)
    window = window_buckets(NOW)
    assert window[0] == "2026-11-20T13" and window[-1] == "2026-11-27T13"
    assert len(window) == 7 * 24 + 1
    assert recent_start(NOW, CADENCE) == datetime(2026, 11, 27, 12, tzinfo=UTC)


def _views(refreshed: datetime | None, completed: dict[str, datetime] | None = None) -> dict[str, BucketView]:
    completed = completed or {}
    return {b: BucketView(refreshed, completed.get(b)) for b in window_buckets(NOW)}


def test_never_listed_buckets_are_all_due_oldest_first() -> None:
    due = due_buckets(NOW, CADENCE, {}, limit=1000)
    # Everything older than the recent listing's reach (12:00 onwards is covered every run).
    assert due[0] == "2026-11-20T13" and due[-1] == "2026-11-27T11"
    assert len(due) == 7 * 24 - 1


def test_freshly_listed_buckets_are_not_due() -> None:
    assert due_buckets(NOW, CADENCE, _views(NOW), limit=1000) == []


def test_cadence_thins_with_age() -> None:
    due = due_buckets(NOW, CADENCE, _views(NOW - timedelta(minutes=16)), limit=1000)
    # 15 minutes apply to buckets younger than 24h (their newest creation), hourly beyond.
    assert "2026-11-27T11" in due and "2026-11-26T14" in due
    assert "2026-11-26T12" not in due and "2026-11-22T00" not in due
    due = due_buckets(NOW, CADENCE, _views(NOW - timedelta(minutes=61)), limit=1000)
    assert "2026-11-22T00" in due


def test_a_completion_makes_its_bucket_hot_for_an_hour() -> None:
    old = "2026-11-25T08"
    views = _views(NOW - timedelta(seconds=60), {old: NOW - timedelta(minutes=10)})
    assert due_buckets(NOW, CADENCE, views, limit=1000) == [old]
    views = _views(NOW - timedelta(minutes=14), {old: NOW - timedelta(hours=2)})
    assert due_buckets(NOW, CADENCE, views, limit=1000) == []


def test_limit_keeps_the_most_overdue() -> None:
    views = _views(NOW - timedelta(minutes=20))
    views["2026-11-22T05"] = BucketView(NOW - timedelta(hours=5), None)
    assert due_buckets(NOW, CADENCE, views, limit=1) == ["2026-11-22T05"]


def test_candidates_follow_the_seen_through_rule() -> None:
    seen = datetime(2026, 11, 27, 13, 0, 0, tzinfo=UTC)
    lookback = timedelta(seconds=60)
    kwargs = {"seen_through": seen, "lookback": lookback, "recent": RecentVersions()}
    asked: list[str] = []

    def key(value: str) -> Callable[[], str]:
        return lambda: asked.append(value) or value

    assert is_candidate("2026-11-27T12:59:30Z", key("v"), **kwargs)  # within the lookback
    assert not is_candidate("2026-11-27T12:58:59Z", key("old"), **kwargs)  # listed and processed before
    assert asked == ["v"], "a version the last complete listing saw needs no key"
    assert is_candidate("2020-01-01T00:00:00Z", key("v"), **{**kwargs, "seen_through": None})
    version = recent_key("op", "2026-11-27T12:59:30Z", "abc")
    recent = RecentVersions({version: datetime(2026, 11, 27, 12, 59, 30, tzinfo=UTC)})
    assert not is_candidate("2026-11-27T12:59:30Z", key(version), **{**kwargs, "recent": recent})
    assert not is_candidate(
        "2020-01-01T00:00:00Z", key(version), **{**kwargs, "recent": recent, "seen_through": None}
    )
    other = recent_key("op", "2026-11-27T12:59:30Z", "def")  # same second, other version
    assert is_candidate("2026-11-27T12:59:30Z", key(other), **{**kwargs, "recent": recent})
    assert recent_key("op2", "2026-11-27T12:59:30Z", "abc") != version  # other operation


def test_recent_keys_are_short_and_fixed_width() -> None:
    keys = {
        recent_key(f"comms_operation_{n:026d}", "2026-11-27T12:59:30.123Z", f"{n:016x}") for n in range(5000)
    }
    assert len(keys) == 5000
    assert {len(key) for key in keys} == {RECENT_KEY_CHARS}


def _at(minute: int, second: int = 0) -> datetime:
    return datetime(2026, 11, 27, 12, 0, tzinfo=UTC) + timedelta(minutes=minute, seconds=second)


def test_recent_versions_round_trip_and_prune_by_age() -> None:
    recent = RecentVersions()
    recent.add(recent_key("a", "x", "1"), _at(0, 10))
    recent.add(recent_key("b", "x", "1"), _at(30, 5))
    recent.add(recent_key("c", "x", "1"), _at(30, 50))
    stored = recent.to_stored(keep_after=_at(30, 40))  # minute precision: the whole 12:30 minute stays
    assert list(stored) == ["2026-11-27T12:30"]
    back = RecentVersions.from_stored(stored)
    assert len(back) == 2 and recent_key("b", "x", "1") in back and recent_key("a", "x", "1") not in back


def test_recent_versions_keep_the_newest_up_to_the_cap() -> None:
    recent = RecentVersions()
    for n in range(RECENT_MAX_ENTRIES + 500):
        recent.add(recent_key(f"op{n}", "t", "f"), _at(n // 100))
    stored = recent.to_stored(keep_after=_at(0))
    back = RecentVersions.from_stored(stored)
    assert len(back) == RECENT_MAX_ENTRIES
    assert recent_key(f"op{RECENT_MAX_ENTRIES + 499}", "t", "f") in back  # newest kept
    assert recent_key("op0", "t", "f") not in back  # oldest dropped
    assert sum(len(keys) for keys in stored.values()) == RECENT_MAX_ENTRIES * RECENT_KEY_CHARS


def test_recent_versions_ignore_an_unreadable_stored_form() -> None:
    # The earlier layout (operation id -> "<updatedAt> <fingerprint>") is dropped, not fatal.
    assert len(RecentVersions.from_stored({"comms_operation_1": "2026-11-27T12:00:00Z abcdef"})) == 0


def test_trim_stored_recent_drops_the_oldest_first() -> None:
    stored = {"2026-11-27T12:01": "B" * RECENT_KEY_CHARS * 3, "2026-11-27T12:00": "A" * RECENT_KEY_CHARS * 2}
    assert trim_stored_recent(stored, drop_bytes=1) == {
        "2026-11-27T12:01": stored["2026-11-27T12:01"],
        "2026-11-27T12:00": "A" * RECENT_KEY_CHARS,
    }
    # The whole oldest minute (its keys and its JSON member) and one byte more: one key of the next one.
    older = len(stored["2026-11-27T12:00"]) + len('"2026-11-27T12:00":"",')
    trimmed = trim_stored_recent(stored, drop_bytes=older + 1)
    assert trimmed == {"2026-11-27T12:01": "B" * RECENT_KEY_CHARS * 2}
    assert trim_stored_recent(stored, drop_bytes=10**6) == {}


def test_plan_ranges_groups_never_listed_days_and_small_buckets() -> None:
    due = due_buckets(NOW, CADENCE, {}, limit=1000)
    ranges = plan_ranges(due, {})
    assert [len(r) for r in ranges] == [24] * 6 + [23]
    assert [b for r in ranges for b in r] == due
    listed = NOW - timedelta(hours=2)
    names = ("2026-11-25T01", "2026-11-25T02", "2026-11-25T03", "2026-11-25T04")
    views = {b: BucketView(listed, None) for b in names}
    # Due neighbours always share a listing (never more pages than apart); one that is not due never
    # rides along (its own staggered slot lists it anyway).
    assert plan_ranges(list(names[:3]), views) == [list(names[:3])]
    assert plan_ranges([names[0], names[2]], views) == [[names[0]], [names[2]]]


def test_extend_recent_takes_due_and_free_neighbours() -> None:
    recent_from = recent_start(NOW, CADENCE)  # 12:00
    listed = NOW - timedelta(minutes=1)
    views = {b: BucketView(listed, None) for b in window_buckets(NOW)}
    counts: dict[str, int | None] = {"2026-11-27T12": 200, "2026-11-27T13": 100, "2026-11-27T11": 600}
    counts["2026-11-27T10"] = 600
    counts["2026-11-27T09"] = 50
    window = window_buckets(NOW)
    # 11:00 fits for free (300 + 600 <= 1000); 10:00 would need a second page and is not due.
    assert extend_recent(recent_from, [], views, counts, page_size=1000, window=window) == ["2026-11-27T11"]
    # Due, 10:00 comes along; then 09:00 fits in the second page for free.
    taken = extend_recent(recent_from, ["2026-11-27T10"], views, counts, page_size=1000, window=window)
    assert taken[:3] == ["2026-11-27T11", "2026-11-27T10", "2026-11-27T09"]


def test_extend_recent_counts_every_bucket_of_a_longer_recent_window() -> None:
    cadence = Cadence.parse("4h:0,24h:15m,7d:1h")
    recent_from = recent_start(NOW, cadence)  # 09:00: the recent listing holds 09, 10, 11, 12 and 13
    views = {b: BucketView(NOW - timedelta(minutes=1), None) for b in window_buckets(NOW)}
    counts: dict[str, int | None] = {f"2026-11-27T{h:02d}": 150 for h in range(9, 14)}  # 750: one page
    counts["2026-11-27T08"] = 200  # 750 + 200 still fits the one page: 08:00 rides along for free
    window = window_buckets(NOW)
    assert extend_recent(recent_from, [], views, counts, page_size=1000, window=window) == ["2026-11-27T08"]
    counts["2026-11-27T13"] = 400  # 1,000 already: 08:00 would cost a second page
    assert extend_recent(recent_from, [], views, counts, page_size=1000, window=window) == []


@settings(max_examples=60, deadline=None)
@given(
    ages=st.lists(st.integers(min_value=0, max_value=7 * 24 * 60), min_size=1, max_size=40),
    elapsed=st.integers(min_value=0, max_value=180),
)
def test_every_bucket_is_listed_within_its_cadence(ages: list[int], elapsed: int) -> None:
    """Property: a bucket whose last listing is older than the cadence of its age is always due."""
    views: dict[str, BucketView] = {}
    for minutes in ages:
        bucket = bucket_id(NOW - timedelta(minutes=minutes))
        views[bucket] = BucketView(NOW - timedelta(minutes=elapsed), None)
    due = set(due_buckets(NOW, CADENCE, views, limit=10_000))
    for bucket, view in views.items():
        start = bucket_start(bucket)
        if start >= recent_start(NOW, CADENCE) or bucket not in window_buckets(NOW):
            assert bucket not in due
            continue
        interval = CADENCE.interval(NOW - (start + timedelta(hours=1)))
        assert view.refreshed is not None
        assert (bucket in due) == (NOW - view.refreshed >= interval)


# -- a run's plan: recent listing, due buckets, what may ride along --------------------------------------


def _listed_views(minutes_ago: int) -> dict[str, BucketView]:
    return {b: BucketView(NOW - timedelta(minutes=minutes_ago), None) for b in window_buckets(NOW)}


def test_plan_recent_does_not_extend_during_a_bootstrap() -> None:
    counts: dict[str, int | None] = {}
    seen = NOW - timedelta(minutes=1)
    plan = plan_recent(
        NOW, CADENCE, {}, counts, seen_through=seen, bootstrapped=False, page_size=1000, max_buckets=48
    )
    assert plan == RecentListing(recent_start(NOW, CADENCE), seen)


def test_plan_recent_extends_over_due_buckets_and_takes_their_oldest_listing_as_watermark() -> None:
    views = _listed_views(1)
    views["2026-11-27T11"] = BucketView(NOW - timedelta(minutes=20), None)  # due (15 minutes)
    counts: dict[str, int | None] = dict.fromkeys(window_buckets(NOW), 900)
    seen = NOW - timedelta(minutes=1)
    plan = plan_recent(
        NOW, CADENCE, views, counts, seen_through=seen, bootstrapped=True, page_size=1000, max_buckets=48
    )
    assert plan.start == bucket_start("2026-11-27T11")
    assert plan.seen_through == NOW - timedelta(minutes=20)
    # Without a watermark of its own, the recent listing takes the oldest listing of what it covers.
    plan = plan_recent(
        NOW, CADENCE, views, counts, seen_through=None, bootstrapped=True, page_size=1000, max_buckets=48
    )
    assert plan.seen_through == NOW - timedelta(minutes=20)
    # Nothing due, nothing free: the recent listing stays the cadence's first band.
    plan = plan_recent(
        NOW,
        CADENCE,
        _listed_views(1),
        counts,
        seen_through=seen,
        bootstrapped=True,
        page_size=1000,
        max_buckets=48,
    )
    assert plan == RecentListing(recent_start(NOW, CADENCE), seen)


def test_plan_due_keeps_only_buckets_older_than_the_recent_listing() -> None:
    views = _listed_views(20)  # every bucket of 1-24 hours is due (15 minutes)
    recent_from = bucket_start("2026-11-27T10")  # the recent listing was extended over 10:00 and 11:00
    due = plan_due(NOW, CADENCE, views, recent_from=recent_from, bootstrapped=True, max_buckets=1000)
    assert due and all(bucket_start(b) < recent_from for b in due)
    assert "2026-11-27T11" not in due and "2026-11-27T09" in due


def test_plan_due_lists_every_bucket_once_during_a_bootstrap_whatever_the_limit() -> None:
    due = plan_due(
        NOW, CADENCE, {}, recent_from=recent_start(NOW, CADENCE), bootstrapped=False, max_buckets=1
    )
    assert len(due) == 7 * 24 - 1


def test_plan_due_puts_buckets_of_two_or_more_departures_first() -> None:
    views = _listed_views(1)  # nothing due on the cadence
    recent_from = recent_start(NOW, CADENCE)
    created = {
        "a": "2026-11-25T08:10:00Z",
        "b": "2026-11-25T08:50:00Z",  # two in 08:00: listing it is cheaper than two fetches
        "c": "2026-11-26T03:00:00Z",  # alone: fetched
        "d": "2026-11-27T12:30:00Z",  # covered by the recent listing
        "e": "2026-11-27T12:40:00Z",
        "f": "2026-11-20T01:00:00Z",  # left the window
        "g": "2026-11-20T01:10:00Z",
        "h": "2026-11-26T05:00:00Z",
        "i": "2026-11-26T05:01:00Z",
    }
    due = plan_due(
        NOW,
        CADENCE,
        views,
        recent_from=recent_from,
        bootstrapped=True,
        max_buckets=48,
        departed=created.items(),
    )
    # Inserted at the front one by one, in bucket order: the later bucket ends up first.
    assert due == ["2026-11-26T05", "2026-11-25T08"]
    overdue = dict(views, **{"2026-11-26T05": BucketView(NOW - timedelta(minutes=90), None)})
    due = plan_due(
        NOW,
        CADENCE,
        overdue,
        recent_from=recent_from,
        bootstrapped=True,
        max_buckets=48,
        departed=created.items(),
    )
    assert due == ["2026-11-25T08", "2026-11-26T05"], "a due bucket keeps its place"


def test_next_checkpoint_records_completions_trims_to_the_window_and_bootstraps() -> None:
    listed = BucketState().listed(NOW - timedelta(minutes=5), 3)
    buckets = {b: listed for b in window_buckets(NOW)} | {"2026-11-19T00": listed}
    completion = NOW - timedelta(minutes=2)
    recent = RecentVersions()
    recent.add(recent_key("op", "t", "f"), NOW - timedelta(minutes=1))
    recent.add(recent_key("old", "t", "f"), NOW - timedelta(hours=1))
    seen = NOW - timedelta(minutes=3)
    checkpoint = next_checkpoint(
        Checkpoint(),
        buckets,
        completions={"2026-11-27T09": completion, "2026-11-18T00": completion},
        recent=recent,
        seen_through=seen,
        run_start=NOW,
        now=NOW,
        lookback=timedelta(minutes=5),
    )
    assert checkpoint.bootstrapped, "every bucket of the window was listed"
    assert set(checkpoint.buckets) == set(window_buckets(NOW)), "buckets past retention are dropped"
    assert checkpoint.buckets["2026-11-27T09"].completed == format_timestamp(completion)
    assert checkpoint.seen_through == format_timestamp(seen) and checkpoint.last_run_at == format_timestamp(
        NOW
    )
    assert len(RecentVersions.from_stored(checkpoint.recent)) == 1, "only what the lookback can reach"
    # An earlier completion never replaces a later one; a bucket never listed is not bootstrapped.
    later = next_checkpoint(
        checkpoint,
        {"2026-11-27T09": checkpoint.buckets["2026-11-27T09"]},
        completions={"2026-11-27T09": completion - timedelta(hours=1)},
        recent=RecentVersions(),
        seen_through=None,
        run_start=NOW,
        now=NOW,
        lookback=timedelta(0),
    )
    assert later.buckets["2026-11-27T09"].completed == format_timestamp(completion)
    assert later.bootstrapped, "once bootstrapped, always"
    fresh = next_checkpoint(
        Checkpoint(),
        {},
        completions={},
        recent=RecentVersions(),
        seen_through=None,
        run_start=NOW,
        now=NOW,
        lookback=timedelta(0),
    )
    assert not fresh.bootstrapped and fresh.seen_through is None
