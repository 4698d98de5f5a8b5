"""Which listings a run makes and which listed operations it has to look at (pure, no I/O).

The list API filters on ``createdAt`` (``startDate``/``endDate``) and ``status`` only. A run lists:

* the active set: ``status=PROCESSING`` and ``status=SCHEDULED`` over the retention window, the latter
  only when it can show something new (:func:`scheduled_listing_needed` gives the argument);
* the recent set: everything created since the start of the hour bucket that is ``recent_window`` old
  (new operations of any status, and every-run follow-up of young ones);
* due hour buckets: absolute hours of ``createdAt`` (membership never changes), each listed when the time
  since its last complete listing reaches the cadence for its age (see :class:`Cadence`), or earlier at
  its slot, which spreads the slower bands over their interval (:func:`due_buckets`, :func:`slot_passed`).

A listed operation is a *candidate* (its state is read and compared) only if its ``updatedAt`` is not
older than the source's previous complete listing minus ``lookback`` and its exact version is not among
the versions processed recently. Anything older was already listed, with this same version, by that
earlier complete listing and processed then.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Final, Protocol

from comms_bridge.comms.models import parse_timestamp

RETENTION: Final = timedelta(days=7)
HOUR: Final = timedelta(hours=1)
DEFAULT_CADENCE: Final = "1h:0,24h:15m,7d:1h"

_DURATION_RE: Final = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNITS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """``90`` / ``90s`` / ``15m`` / ``1h`` / ``7d``."""
    match = _DURATION_RE.match(text)
    if match is None:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 15m, 1h, 7d)")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


@dataclass(frozen=True)
class Cadence:
    """Follow-up intervals by age: ``bands`` = ((age limit, interval), ...), ages ascending.

    An operation younger than the first limit is looked at every run (its interval must be 0: the
    recent listing covers it); up to the next limit at least every ``interval``; past the last limit
    the last interval holds until retention ends. "Age" of an hour bucket is the time since its newest
    possible creation or since an operation in it was last seen completing, whichever is shorter, so
    a completion re-starts the fast follow-up for its bucket.
    """

    bands: tuple[tuple[timedelta, timedelta], ...]

    @classmethod
    def parse(cls, text: str) -> Cadence:
        bands: list[tuple[timedelta, timedelta]] = []
        for part in filter(None, (p.strip() for p in text.replace("=", ":").split(","))):
            age_text, _, interval_text = part.partition(":")
            interval_text = interval_text.strip().lower()
            interval = timedelta(0) if interval_text in ("every", "0") else parse_duration(interval_text)
            bands.append((parse_duration(age_text), interval))
        if not bands:
            raise ValueError("FOLLOW_UP_CADENCE is empty")
        ages = [age for age, _ in bands]
        if ages != sorted(ages) or len(set(ages)) != len(ages):
            raise ValueError("FOLLOW_UP_CADENCE ages must be strictly ascending")
        if bands[0][1] != timedelta(0) or bands[0][0] < HOUR:
            raise ValueError("FOLLOW_UP_CADENCE must start with an every-run band of at least 1h (e.g. 1h:0)")
        if any(interval <= timedelta(0) for _, interval in bands[1:]):
            raise ValueError("FOLLOW_UP_CADENCE: only the first band may be every run")
        return cls(tuple(bands))

    @property
    def recent_window(self) -> timedelta:
        return self.bands[0][0]

    def interval(self, age: timedelta) -> timedelta:
        for limit, interval in self.bands:
            if age < limit:
                return interval
        return self.bands[-1][1]


def floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def bucket_id(moment: datetime) -> str:
    return floor_hour(moment).strftime("%Y-%m-%dT%H")


@lru_cache(maxsize=4096)
def bucket_start(bucket: str) -> datetime:
    # Cached: a run asks for the same ~170 buckets thousands of times, and strptime was a tenth of its CPU.
    return datetime.strptime(bucket, "%Y-%m-%dT%H").replace(tzinfo=UTC)


def recent_start(now: datetime, cadence: Cadence) -> datetime:
    """``startDate`` of the recent listing: aligned to a bucket so that it covers whole buckets."""
    return floor_hour(now - cadence.recent_window)


def window_buckets(now: datetime) -> list[str]:
    """Every hour bucket from the start of retention up to the current hour, oldest first."""
    first = floor_hour(now - RETENTION)
    count = int((floor_hour(now) - first) / HOUR) + 1
    return [bucket_id(first + HOUR * i) for i in range(count)]


@dataclass(frozen=True)
class BucketView:
    refreshed: datetime | None
    completed: datetime | None


STAGGER_PAGES: Final = 3
"""Pages a stagger block aims at: big enough that the half page a listing wastes on average stays small
beside it, small enough that a run listing one block (or a block of each band) stays near the mean."""

_GOLDEN: Final = (5**0.5 - 1) / 2


def stagger_block(counts: Mapping[str, int | None], page_size: int) -> int:
    """Adjacent hours that share a follow-up slot: about :data:`STAGGER_PAGES` pages of operations at the
    window's mean listed count (1 while nothing was listed yet)."""
    known = [count for count in counts.values() if count]
    if not known:
        return 1
    mean = sum(known) / len(known)
    return max(1, min(MAX_RANGE_BUCKETS, round(STAGGER_PAGES * page_size / mean)))


def slot_passed(bucket: str, refreshed: datetime, now: datetime, interval: timedelta, *, block: int) -> bool:
    """True if the bucket's follow-up slot came round since ``refreshed``.

    Slots repeat every ``interval`` at a phase fixed by the bucket's block of ``block`` adjacent absolute
    hours: the phase of block ``k`` is ``frac(k * 0.618...) * interval``, so any run of consecutive blocks
    is spread evenly over the interval and adjacent hours of a block share a listing. Any grid of spacing
    ``interval`` has a point in every half-open stretch of that length, so a bucket whose interval has
    passed since ``refreshed`` always has its slot passed too: slots only ever bring a listing forward."""
    block_index = int(bucket_start(bucket).timestamp()) // 3600 // max(block, 1)
    period = interval.total_seconds()
    phase = (block_index * _GOLDEN) % 1.0 * period
    moment = now.timestamp()
    slot = moment - (moment - phase) % period
    return refreshed.timestamp() < slot


def due_buckets(
    now: datetime, cadence: Cadence, buckets: Mapping[str, BucketView], *, limit: int, block: int = 0
) -> list[str]:
    """Buckets older than the recent listing's reach whose follow-up is due, most overdue first.

    A bucket is due once the interval of its age has passed since its last complete listing. With
    ``block`` (see :func:`stagger_block`; 0: no stagger) it is due earlier too, at its slot (see
    :func:`slot_passed`) once half its interval has passed: buckets listed together once (a bootstrap,
    a band boundary) spread over the runs of their interval instead of falling due on the same run
    every interval, and each still gets its listing at least every interval."""
    covered_from = recent_start(now, cadence)
    scored: list[tuple[timedelta, str]] = []
    for bucket in window_buckets(now):
        start = bucket_start(bucket)
        if start >= covered_from:
            continue
        view = buckets.get(bucket, BucketView(None, None))
        if view.refreshed is None:
            scored.append((timedelta.max, bucket))
            continue
        age = now - (start + HOUR)
        if view.completed is not None:
            age = min(age, now - view.completed)
        interval = cadence.interval(max(age, timedelta(0)))
        elapsed = now - view.refreshed
        if elapsed >= interval or (
            block
            and elapsed * 2 >= interval
            and slot_passed(bucket, view.refreshed, now, interval, block=block)
        ):
            scored.append((elapsed - interval, bucket))
    scored.sort(key=lambda pair: (-pair[0].total_seconds(), pair[1]))
    return [bucket for _, bucket in scored[:limit]]


def is_candidate(
    updated_at: str,
    version: Callable[[], str],
    *,
    seen_through: datetime | None,
    lookback: timedelta,
    recent: Container[str],
) -> bool:
    """True if this listed version may be one the poller has not processed yet. ``version`` gives its
    :func:`recent_key`, asked only for a version the listing's last complete run may not have seen (most
    listed versions are older than that, and the key's digests were a fifth of a run's CPU)."""
    if seen_through is not None and parse_timestamp(updated_at) < seen_through - lookback:
        return False
    return version() not in recent


RECENT_KEY_CHARS: Final = 12
"""9 bytes (72 bits) of BLAKE2b in base64url: a false match among thousands of remembered versions is
astronomically unlikely, and each entry costs 12 bytes of the checkpoint item instead of ~90."""

RECENT_MAX_ENTRIES: Final = 10_000
"""At most ~125 KB of the checkpoint item (DynamoDB's limit is 400 KB): a 5,000-operation burst fits
whole. Dropping an entry only costs a state read later (the version is then read and compared)."""

_MINUTE_FORMAT: Final = "%Y-%m-%dT%H:%M"


def recent_key(operation_id: str, updated_at: str, fingerprint: str) -> str:
    """Compact identity of one processed version of one operation."""
    text = f"{operation_id} {updated_at} {fingerprint}".encode()
    return base64.urlsafe_b64encode(hashlib.blake2b(text, digest_size=9).digest()).decode()


class RecentVersions:
    """Versions processed recently (:func:`recent_key` -> ``updatedAt``), so that a lookback re-listing
    them costs no state read. Only an optimisation: a version missing here is read and compared.

    Stored in the checkpoint as ``{"<updatedAt minute>": "<key><key>..."}``: fixed-width keys
    concatenated per minute of ``updatedAt`` (minutes are precise enough to prune by age)."""

    def __init__(self, entries: Mapping[str, datetime] | None = None) -> None:
        self._entries: dict[str, datetime] = dict(entries or {})

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, key: str, updated: datetime) -> None:
        self._entries[key] = updated

    @classmethod
    def from_stored(cls, stored: Mapping[str, str]) -> RecentVersions:
        """Read the stored form; anything unreadable (e.g. an older layout) is skipped, never fatal."""
        entries: dict[str, datetime] = {}
        for minute, keys in stored.items():
            updated = recent_minute(minute)
            if updated is None or len(keys) % RECENT_KEY_CHARS or " " in keys:
                continue
            for start in range(0, len(keys), RECENT_KEY_CHARS):
                entries[keys[start : start + RECENT_KEY_CHARS]] = updated
        return cls(entries)

    def to_stored(self, *, keep_after: datetime, max_entries: int = RECENT_MAX_ENTRIES) -> dict[str, str]:
        """The stored form of the entries a lookback can still reach (``updatedAt`` not before
        ``keep_after``), newest first, at most ``max_entries``."""
        floor = keep_after.replace(second=0, microsecond=0)
        kept = sorted(
            ((updated, key) for key, updated in self._entries.items() if updated >= floor), reverse=True
        )[: max(max_entries, 0)]
        grouped: dict[str, list[str]] = {}
        for updated, key in kept:
            grouped.setdefault(updated.strftime(_MINUTE_FORMAT), []).append(key)
        return {minute: "".join(sorted(keys)) for minute, keys in sorted(grouped.items(), reverse=True)}


def recent_minute(text: str) -> datetime | None:
    """The minute of a stored :class:`RecentVersions` entry, None when unreadable."""
    try:
        return datetime.strptime(text, _MINUTE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def trim_stored_recent(stored: Mapping[str, str], *, drop_bytes: int) -> dict[str, str]:
    """Drop at least ``drop_bytes`` of stored entries, oldest minutes first (whole keys only)."""
    kept = dict(sorted(stored.items(), reverse=True))
    for minute in sorted(kept):
        if drop_bytes <= 0:
            break
        keys = kept[minute]
        drop_keys = min(len(keys) // RECENT_KEY_CHARS, -(-drop_bytes // RECENT_KEY_CHARS))
        if drop_keys * RECENT_KEY_CHARS >= len(keys):
            del kept[minute]
            drop_bytes -= len(keys) + len(minute) + 6  # the key, quotes, colon and comma go too
        else:
            kept[minute] = keys[drop_keys * RECENT_KEY_CHARS :]
            drop_bytes -= drop_keys * RECENT_KEY_CHARS
    return kept


def group_by_bucket(created: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """(operation id, createdAt) pairs -> bucket -> ids."""
    groups: dict[str, list[str]] = {}
    for op_id, created_at in created:
        groups.setdefault(bucket_id(parse_timestamp(created_at)), []).append(op_id)
    return groups


BOOTSTRAP_RANGE_BUCKETS: Final = 24
MAX_RANGE_BUCKETS: Final = 24


def pages(count: int, page_size: int) -> int:
    return max(1, -(-count // page_size))


def _fits_free(total: int, count: int | None, page_size: int) -> bool:
    return count is not None and pages(total + count, page_size) == pages(total, page_size)


def narrowed_bootstrap_range(
    group: Sequence[str], views: Mapping[str, BucketView], stopped: StopReason
) -> int | None:
    """The narrower span for listings of never-listed buckets after ``group``'s listing failed, None if it
    needs none: only when it ran out of time (``stopped.stopped_reason``). Such a listing is committed
    only once read to the end (the order of a listing is not documented, so a partial one proves no
    bucket complete): a span that does not fit in one invocation would be listed again from its start by
    every invocation, and a bootstrap of a dense window (1M operations: ~140 pages a day) would never
    finish. Half the span each time, down to one bucket, which fits as long as an hour of operations can
    be listed within the function's timeout."""
    if stopped.stopped_reason != "time budget" or len(group) < 2:
        return None
    never = all(views.get(b, BucketView(None, None)).refreshed is None for b in group)
    return max(1, len(group) // 2) if never else None


class StopReason(Protocol):
    """What :func:`narrowed_bootstrap_range` reads of a run's summary."""

    stopped_reason: str | None


def plan_ranges(
    due: list[str], views: Mapping[str, BucketView], *, bootstrap_range: int | None = None
) -> list[list[str]]:
    """Group buckets into listings (``startDate``..``endDate`` ranges), most overdue group first.

    A listing costs pages, not buckets: next to a due bucket, an adjacent bucket that is due too shares
    its listing (never more pages than apart). A bucket that is not due never
    rides along: with staggered slots (:func:`due_buckets`) it is listed again at its own slot anyway.
    Never-listed adjacent buckets (a bootstrap) share a listing of up to ``bootstrap_range`` buckets
    (None: a day; narrowed by :func:`narrowed_bootstrap_range`).
    """
    span = bootstrap_range or BOOTSTRAP_RANGE_BUCKETS
    due_set = set(due)
    placed: set[str] = set()
    ranges: list[list[str]] = []

    def never(bucket: str) -> bool:
        return views.get(bucket, BucketView(None, None)).refreshed is None

    for head in due:
        if head in placed:
            continue
        group = [head]
        placed.add(head)
        for step in (HOUR, -HOUR):
            cursor = bucket_start(head)
            while len(group) < (span if never(head) else MAX_RANGE_BUCKETS):
                cursor += step
                nxt = bucket_id(cursor)
                if nxt in placed or nxt not in due_set or never(head) != never(nxt):
                    break
                if step > timedelta(0):
                    group.append(nxt)
                else:
                    group.insert(0, nxt)
                placed.add(nxt)
        ranges.append(group)
    return ranges


def extend_recent(
    recent_from: datetime,
    due: Iterable[str],
    views: Mapping[str, BucketView],
    counts: Mapping[str, int | None],
    *,
    page_size: int,
    window: Iterable[str],
) -> list[str]:
    """Buckets just older than the recent listing that it should cover too: due ones (never dearer than
    listing them apart) and ones that fit in its pages for free. Returned newest first."""
    due_set = set(due)
    buckets = list(window)
    in_window = set(buckets)
    # What the recent listing holds already: every bucket from its start up to the current one.
    total = sum(counts.get(b) or 0 for b in buckets if bucket_start(b) >= recent_from)
    taken: list[str] = []
    cursor = recent_from
    while len(taken) < MAX_RANGE_BUCKETS:
        cursor -= HOUR
        bucket = bucket_id(cursor)
        if bucket not in in_window or views.get(bucket, BucketView(None, None)).refreshed is None:
            break
        if bucket not in due_set and not _fits_free(total, counts.get(bucket), page_size):
            break
        taken.append(bucket)
        total += counts.get(bucket) or 0
    return taken


@dataclass(frozen=True)
class RecentListing:
    """The recent listing of one run: ``startDate`` and the watermark its candidates are judged by (the
    oldest previous complete listing of everything it covers)."""

    start: datetime
    seen_through: datetime | None


def plan_recent(
    now: datetime,
    cadence: Cadence,
    views: Mapping[str, BucketView],
    counts: Mapping[str, int | None],
    *,
    seen_through: datetime | None,
    bootstrapped: bool,
    page_size: int,
    max_buckets: int,
    block: int = 0,
) -> RecentListing:
    """The recent window, reaching further back over the adjacent buckets :func:`extend_recent` takes. A
    bootstrap does not extend it: the bucket listings cover everything older once anyway. ``block``: see
    :func:`due_buckets`."""
    start = recent_start(now, cadence)
    if not bootstrapped:
        return RecentListing(start, seen_through)
    due = due_buckets(now, cadence, views, limit=max_buckets, block=block)
    extra = extend_recent(start, due, views, counts, page_size=page_size, window=window_buckets(now))
    if not extra:
        return RecentListing(start, seen_through)
    # The taken buckets were listed before (extend_recent takes no never-listed one): their oldest
    # listing bounds what this listing may already have seen.
    oldest = min(refreshed for b in extra if (refreshed := views[b].refreshed) is not None)
    return RecentListing(
        bucket_start(extra[-1]), oldest if seen_through is None else min(seen_through, oldest)
    )


BOOTSTRAP_DUE_LIMIT: Final = 10_000
"""More than retention holds (169 buckets): a bootstrap lists every bucket once; only the time budget
spreads it over runs."""


def plan_due(
    now: datetime,
    cadence: Cadence,
    views: Mapping[str, BucketView],
    *,
    recent_from: datetime,
    bootstrapped: bool,
    max_buckets: int,
    departed: Iterable[tuple[str, str]] = (),
    block: int = 0,
) -> list[str]:
    """The hour buckets to list after the recent listing, most overdue first: the due ones it did not
    cover, and ahead of them the buckets holding two or more departed operations (``departed``: (id,
    createdAt) of tracked operations no longer listed as active), which one listing finds cheaper than a
    fetch each. ``block``: see :func:`due_buckets`."""
    if bootstrapped:
        due = due_buckets(now, cadence, views, limit=max_buckets, block=block)
        due = [b for b in due if bucket_start(b) < recent_from]
    else:
        due = due_buckets(now, cadence, views, limit=BOOTSTRAP_DUE_LIMIT)
    window = set(window_buckets(now))
    for bucket, ids in sorted(group_by_bucket(departed).items()):
        if bucket in window and bucket not in due and bucket_start(bucket) < recent_from and len(ids) > 1:
            due.insert(0, bucket)
    return due


def scheduled_listing_needed(
    now: datetime,
    views: Mapping[str, BucketView],
    *,
    recent_from: datetime,
    tracking_scheduled: bool,
    lookback: timedelta,
) -> bool:
    """Whether the run has to list ``status=SCHEDULED``; False only when that listing provably shows
    nothing the run does not see anyway.

    An operation can be created SCHEDULED at any moment, so "nothing can be scheduled" is an argument
    about what the poller has seen, not about the account. The listing is skipped only when

    1. no tracked operation is SCHEDULED (``tracking_scheduled`` is False: the active index holds none), and
    2. every bucket of the window older than ``recent_from`` (the start of this run's recent listing)
       had a complete listing that started at least ``lookback`` after the bucket's last hour ended.

    Then an operation that is SCHEDULED now was either created at or after ``recent_from``, and the
    recent listing of this run shows it whatever its status, or created before: then (2) a complete
    listing showed it after its creation, and the run that took that listing recorded it (its state is
    written before the listing counts as complete). Recorded as SCHEDULED, it would be in the active
    index until the poller sees it in another status, contradicting (1); recorded in another status, it
    is SCHEDULED now only by moving back, which a tracked active operation does as a departure (no
    active listing shows it: its bucket is listed or it is fetched) and a terminal one never does.
    Skipping loses nothing else: a SCHEDULED operation turning PROCESSING shows in the PROCESSING
    listing, and every operation still gets its bucket's follow-up at the cadence."""
    if tracking_scheduled:
        return True
    for bucket in window_buckets(now):
        start = bucket_start(bucket)
        if start >= recent_from:
            continue
        refreshed = views.get(bucket, BucketView(None, None)).refreshed
        if refreshed is None or refreshed < start + HOUR + lookback:
            return True
    return False
