"""What the phases of one leased poller run share (:class:`RunFrame`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from comms_bridge.comms.models import parse_timestamp
from comms_bridge.poller.candidates import Candidates
from comms_bridge.poller.change_detection import TrackedOperation
from comms_bridge.poller.checkpoint import BucketState, Checkpoint, bucket_counts, bucket_views
from comms_bridge.poller.config import PollerConfig
from comms_bridge.poller.discovery import (
    RecentListing,
    bucket_start,
    plan_recent,
    stagger_block,
    window_buckets,
)


@dataclass(frozen=True)
class RunFrame:
    """Where the run started (API clock, the checkpoint it read, its watermark, its recent listing, the
    active index) and its working copies: the bucket map it will save, the ids any listing showed, the
    bucket listings not yet committed, the candidates."""

    run_start: datetime
    checkpoint: Checkpoint
    seen_through: datetime | None
    recent: RecentListing
    index: Mapping[str, TrackedOperation]
    buckets: dict[str, BucketState]
    candidates: Candidates
    # Adjacent hours sharing a follow-up slot (discovery.stagger_block), fixed for the whole run.
    block: int = 0
    listed_ids: set[str] = field(default_factory=set)
    # (bucket, API time its listing started, operations listed): committed by the next successful flush.
    uncommitted: list[tuple[str, datetime, int]] = field(default_factory=list)

    @classmethod
    def begin(
        cls,
        run_start: datetime,
        checkpoint: Checkpoint,
        *,
        index: Mapping[str, TrackedOperation],
        candidates: Candidates,
        config: PollerConfig,
    ) -> RunFrame:
        seen_through = parse_timestamp(checkpoint.seen_through) if checkpoint.seen_through else None
        buckets = dict(checkpoint.buckets)
        block = stagger_block(bucket_counts(buckets), config.page_size)
        recent = plan_recent(
            run_start,
            config.cadence,
            bucket_views(buckets),
            bucket_counts(buckets),
            seen_through=seen_through,
            bootstrapped=checkpoint.bootstrapped,
            page_size=config.page_size,
            max_buckets=config.max_buckets_per_run,
            block=block,
        )
        return cls(run_start, checkpoint, seen_through, recent, index, buckets, candidates, block)

    def departures(self) -> dict[str, TrackedOperation]:
        """Tracked active operations no listing showed (so far: the active and the recent one): they turned
        terminal or left retention. Found again through their bucket, else fetched."""
        return {op_id: state for op_id, state in self.index.items() if op_id not in self.listed_ids}

    def mark_recent_listed(self, counts: Mapping[str, int]) -> datetime:
        """Record the buckets the recent listing covered as listed at the run's start; the new
        ``seenThrough``."""
        for bucket in window_buckets(self.run_start):
            if bucket_start(bucket) >= self.recent.start:
                old = self.buckets.get(bucket, BucketState())
                self.buckets[bucket] = old.listed(self.run_start, counts.get(bucket, 0))
        return self.run_start
