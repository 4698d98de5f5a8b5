"""What a poller run did: returned by the handler and printed by ``make bench`` and the demo."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class RunSummary:
    """What a run did; returned by the handler and printed by ``make bench`` and the demo."""

    status: str = "complete"  # complete | partial | contended | failed
    operations_seen: int = 0
    candidates: int = 0
    changes_detected: int = 0
    events_published: int = 0
    publish_failures: int = 0
    stale_observations: int = 0
    skipped_malformed: int = 0
    states_written: int = 0
    departures: int = 0
    fetched: int = 0
    retention_dropped: int = 0
    buckets_refreshed: int = 0
    buckets_due_left: int = 0
    comms_requests: int = 0
    put_events_calls: int = 0
    requests_by_listing: dict[str, int] = field(default_factory=dict)
    dynamodb_calls: dict[str, int] = field(default_factory=dict)
    dynamodb_items_read: int = 0
    dynamodb_items_written: int = 0
    checkpoint_lag_seconds: float | None = None
    duration_ms: int = 0
    bootstrapped: bool = False
    stopped_reason: str | None = None
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
