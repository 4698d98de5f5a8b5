"""The poller's checkpoint document: watermarks, hour buckets and recently processed versions, kept
under DynamoDB's item size limit."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from comms_bridge.comms.models import format_timestamp, parse_timestamp
from comms_bridge.poller.discovery import (
    BucketView,
    RecentVersions,
    bucket_start,
    recent_minute,
    trim_stored_recent,
    window_buckets,
)
from comms_bridge.poller.exceptions import StateStoreError

logger = logging.getLogger(__name__)


class BucketState(BaseModel):
    """One hour of ``createdAt``. ``refreshed``: API time of the last complete listing of the bucket;
    ``completed``: latest API time an operation of the bucket was seen turning terminal; ``count``: how
    many operations the last listing returned."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    refreshed: str | None = Field(default=None, alias="r")
    completed: str | None = Field(default=None, alias="c")
    count: int | None = Field(default=None, alias="n")

    def listed(self, at: datetime, count: int) -> BucketState:
        """This bucket after a complete listing that started at ``at`` (API clock) and held ``count``."""
        return self.model_copy(update={"refreshed": format_timestamp(at), "count": count})

    def view(self) -> BucketView:
        return BucketView(_parse(self.refreshed), _parse(self.completed))


class Checkpoint(BaseModel):
    """Per account. ``seen_through``: API time at the start of the last run whose active lists and
    recent list were processed completely. ``buckets``: only the hour buckets inside retention (169 at
    most). ``recent``: versions already processed that a lookback would otherwise re-read, in the
    compact, capped form of :meth:`comms_bridge.poller.discovery.RecentVersions.to_stored`."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    version: int = 1
    bootstrapped: bool = False
    seen_through: str | None = Field(default=None, alias="seenThrough")
    last_run_at: str | None = Field(default=None, alias="lastRunAt")
    buckets: dict[str, BucketState] = Field(default_factory=dict)
    recent: dict[str, str] = Field(default_factory=dict)
    # Buckets a listing of never-listed buckets may span during a bootstrap: narrowed each time such a
    # listing ran out of time (:func:`comms_bridge.poller.discovery.narrowed_bootstrap_range`). None: the
    # default, a day.
    bootstrap_range: int | None = Field(default=None, alias="bootstrapRange", ge=1)


CHECKPOINT_DOC_MAX_BYTES: Final = 350_000
"""DynamoDB refuses items over 400 KB; the rest of the item (key, lease attributes) is well under 50 KB."""


def fit_checkpoint(
    checkpoint: Checkpoint, *, max_bytes: int = CHECKPOINT_DOC_MAX_BYTES
) -> tuple[Checkpoint, str]:
    """The checkpoint and its serialized ``doc``, ``recent`` trimmed (oldest first) until the doc fits in
    ``max_bytes``: forgetting processed versions only costs state reads, a refused write stops the
    poller for good. Fails only if the doc is too big without any ``recent`` (cannot happen: the bucket
    map is bounded by retention)."""
    doc = checkpoint.model_dump_json(by_alias=True, exclude_none=True)
    size = len(doc.encode())
    while size > max_bytes and checkpoint.recent:  # every round drops at least one entry
        recent = trim_stored_recent(checkpoint.recent, drop_bytes=size - max_bytes)
        checkpoint = checkpoint.model_copy(update={"recent": recent})
        doc = checkpoint.model_dump_json(by_alias=True, exclude_none=True)
        size = len(doc.encode())
        logger.warning("checkpoint trimmed to its size limit", extra={"bytes": size})
    if size > max_bytes:
        raise StateStoreError(f"checkpoint of {size} bytes exceeds {max_bytes} even without recent versions")
    return checkpoint, doc


def checkpoint_from_item(item: Mapping[str, Any]) -> Checkpoint | None:
    """The checkpoint stored in an item's ``doc`` (None when the item has none yet)."""
    doc = item.get("doc")
    if not doc:
        return None
    return Checkpoint.model_validate_json(doc["S"])


def drop_future_times(checkpoint: Checkpoint, latest: datetime) -> tuple[Checkpoint, int]:
    """The checkpoint without the times later than ``latest`` (the API's clock plus
    ``MAX_CLOCK_SKEW_SECONDS``), and how many there were. Such a time can only come from a ``Date`` that
    should not have been trusted (a run of an earlier version); kept, it would hide every version below its
    watermark, or keep the bucket it marks from being listed, until the clock caught up with it (contract
    §6). A dropped watermark reads as "never": what it guarded is listed again."""
    dropped = 0

    def credible(value: str | None) -> str | None:
        nonlocal dropped
        if value is not None and parse_timestamp(value) > latest:
            dropped += 1
            return None
        return value

    buckets: dict[str, BucketState] = {}
    for bucket, state in checkpoint.buckets.items():
        if bucket_start(bucket) > latest:
            dropped += 1
            continue
        refreshed, completed = credible(state.refreshed), credible(state.completed)
        buckets[bucket] = state.model_copy(update={"refreshed": refreshed, "completed": completed})
    recent = {minute: keys for minute, keys in checkpoint.recent.items() if not _after(minute, latest)}
    dropped += len(checkpoint.recent) - len(recent)
    seen_through, last_run_at = credible(checkpoint.seen_through), credible(checkpoint.last_run_at)
    if not dropped:
        return checkpoint, 0
    logger.warning(
        "the checkpoint held %d time(s) later than the API's clock allows; dropped, what they guarded is "
        "listed again",
        dropped,
    )
    update = {"seen_through": seen_through, "last_run_at": last_run_at, "buckets": buckets, "recent": recent}
    return checkpoint.model_copy(update=update), dropped


def _after(minute: str, latest: datetime) -> bool:
    moment = recent_minute(minute)
    return moment is not None and moment > latest


def bucket_views(buckets: Mapping[str, BucketState]) -> dict[str, BucketView]:
    return {bucket: state.view() for bucket, state in buckets.items()}


def bucket_counts(buckets: Mapping[str, BucketState]) -> dict[str, int | None]:
    return {bucket: state.count for bucket, state in buckets.items()}


def next_checkpoint(
    previous: Checkpoint,
    buckets: Mapping[str, BucketState],
    *,
    completions: Mapping[str, datetime],
    recent: RecentVersions,
    seen_through: datetime | None,
    run_start: datetime,
    now: datetime,
    lookback: timedelta,
    bootstrap_range: int | None = None,
) -> Checkpoint:
    """What a run leaves for the next one: ``buckets`` with the completions it saw (latest wins), cut to
    the retention window at ``now``; bootstrapped once every bucket of the window was listed; the recent
    versions a lookback from ``seen_through`` can still reach; ``bootstrap_range`` while not bootstrapped."""
    window = set(window_buckets(now))
    merged = dict(buckets)
    for bucket, moment in completions.items():
        if bucket in merged or bucket in window:
            old = merged.get(bucket, BucketState())
            if old.completed is None or parse_timestamp(old.completed) < moment:
                merged[bucket] = old.model_copy(update={"completed": format_timestamp(moment)})
    kept = {b: s for b, s in sorted(merged.items()) if b in window}
    bootstrapped = previous.bootstrapped or all(
        kept.get(b, BucketState()).refreshed is not None for b in window
    )
    keep_after = (seen_through or run_start) - lookback
    return Checkpoint(
        bootstrapped=bootstrapped,
        seen_through=format_timestamp(seen_through) if seen_through else None,
        last_run_at=format_timestamp(run_start),
        buckets=kept,
        recent=recent.to_stored(keep_after=keep_after),
        bootstrap_range=None if bootstrapped else bootstrap_range,
    )


def _parse(value: str | None) -> datetime | None:
    return parse_timestamp(value) if value else None
