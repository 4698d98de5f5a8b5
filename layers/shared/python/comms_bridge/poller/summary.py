"""What a poller run did: returned by the handler and printed by ``make bench`` and the demo."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from comms_bridge.poller.ports import MetricsSink


class RunStatus(StrEnum):
    COMPLETE = "complete"
    PARTIAL = "partial"  # something was left for the next run (a listing failed, an event was refused)
    CONTENDED = "contended"  # another run held the lease: nothing was done
    FAILED = "failed"  # the run raised, or could not list anything

    @property
    def incomplete(self) -> bool:
        return self in (RunStatus.PARTIAL, RunStatus.FAILED)


@dataclass
class RunSummary:
    """What a run did; returned by the handler and printed by ``make bench`` and the demo."""

    status: RunStatus = RunStatus.COMPLETE
    operations_seen: int = 0
    candidates: int = 0
    changes_detected: int = 0
    events_published: int = 0
    publish_failures: int = 0
    stale_observations: int = 0
    skipped_malformed: int = 0
    states_written: int = 0
    write_conflicts: int = 0  # state writes refused: another writer (the stream consumer, a run) was first
    claims_recovered: int = 0  # claims of writers that stopped before settling them, finished by this run
    deferred: int = 0  # operations another writer kept claimed: left for the next run
    departures: int = 0
    fetched: int = 0
    retention_dropped: int = 0
    buckets_refreshed: int = 0
    buckets_due_left: int = 0
    scheduled_listing_skipped: bool = False  # proven needless (discovery.scheduled_listing_needed)
    comms_requests: int = 0
    put_events_calls: int = 0
    requests_by_listing: dict[str, int] = field(default_factory=dict)
    dynamodb_calls: dict[str, int] = field(default_factory=dict)
    dynamodb_items_read: int = 0
    dynamodb_items_written: int = 0
    clock_skew_detected: int = 0  # API Dates, and stored times, farther from the local clock than allowed
    checkpoint_lag_seconds: float | None = None
    duration_ms: int = 0
    bootstrapped: bool = False
    stopped_reason: str | None = None
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        # The handler's JSON answer: the status as the plain string every consumer compares with.
        return {**asdict(self), "status": self.status.value}

    def put_metrics(self, metrics: MetricsSink) -> None:
        m = metrics
        m.add("OperationsSeen", "Count", self.operations_seen)
        m.add("ChangesDetected", "Count", self.changes_detected)
        m.add("EventsPublished", "Count", self.events_published)
        m.add("PublishFailures", "Count", self.publish_failures)
        m.add("SkippedMalformedItems", "Count", self.skipped_malformed)
        m.add("CommsApiRequests", "Count", self.comms_requests)
        m.add("RunDurationMs", "Milliseconds", self.duration_ms)
        m.add("StateItemsRead", "Count", self.dynamodb_items_read)
        m.add("StateItemsWritten", "Count", self.dynamodb_items_written)
        m.add("BucketsRefreshed", "Count", self.buckets_refreshed)
        m.add("ClockSkewDetected", "Count", self.clock_skew_detected)
        m.add("WriteConflicts", "Count", self.write_conflicts)
        m.add("ClaimsRecovered", "Count", self.claims_recovered)
        if self.checkpoint_lag_seconds is not None:
            m.add("CheckpointLagSeconds", "Seconds", self.checkpoint_lag_seconds)
        if self.status.incomplete:
            m.add("IncompleteRuns", "Count", 1)
