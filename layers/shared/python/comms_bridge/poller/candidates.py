"""The listed versions a run still has to decide, applied in flushes so that memory stays bounded by a
page plus ``FLUSH_OPERATIONS`` candidates, never by the window."""

from __future__ import annotations

from datetime import datetime, timedelta

from comms_bridge.comms.models import EmailOperation, parse_timestamp
from comms_bridge.poller.apply import ChangeApplier, Observation
from comms_bridge.poller.change_detection import TrackedOperation
from comms_bridge.poller.discovery import RecentVersions, bucket_id, is_candidate, recent_key
from comms_bridge.poller.state_store import fingerprint


class Candidates:
    """Versions that may be news (``pending``) and tracked operations to check for a stall, until the next
    :meth:`flush` hands them to the applier.

    ``recent``: versions processed lately (read from the checkpoint, grown by every flush) that need no
    state read. ``completions``: per hour bucket, the latest ``updatedAt`` of an operation seen turning
    terminal. ``failed``: a flush had an event refused; later flushes of the run do nothing, so the
    listings they came from are not marked as seen and the next run lists them again.
    """

    def __init__(
        self, applier: ChangeApplier, recent: RecentVersions, *, lookback: timedelta, flush_at: int
    ) -> None:
        self.applier = applier
        self.recent = recent
        self.lookback = lookback
        self.flush_at = flush_at
        self.pending: dict[str, Observation] = {}
        self.stall_checks: set[str] = set()
        self.completions: dict[str, datetime] = {}
        self.failed = False

    @property
    def full(self) -> bool:
        return len(self.pending) >= self.flush_at

    def offer(
        self, op: EmailOperation, observed_at: datetime, *, seen_through: datetime | None, unread: bool
    ) -> bool:
        """Keep a listed version unless it is one already processed; True if it is a new candidate.
        ``seen_through``: the listing's previous complete run (see :func:`is_candidate`). ``unread``: no
        state can exist for the operation, so none is read."""
        known = self.applier.tracked(op.id)
        if known is not None:
            # Already known this run (active index, or read/written earlier): compare directly.
            return not _same_version(known, op) and self.add(op, observed_at)
        if not is_candidate(
            op.updated_at,
            lambda: version_key(op),
            seen_through=seen_through,
            lookback=self.lookback,
            recent=self.recent,
        ):
            return False
        if unread:
            self.applier.assume_untracked(op.id)
        return self.add(op, observed_at)

    def add(self, op: EmailOperation, observed_at: datetime) -> bool:
        """Keep the newest version seen of ``op``; True if the operation was not pending yet."""
        current = self.pending.get(op.id)
        if current is None or op.updated >= current.operation.updated:
            self.pending[op.id] = Observation(op, observed_at)
        return current is None

    def check_stall(self, operation_id: str) -> None:
        self.stall_checks.add(operation_id)

    def flush(self) -> bool:
        """Apply what is pending; False if an event was refused now or in an earlier flush."""
        if self.failed:
            return False
        applied = self.applier.apply(self.pending, self.stall_checks)
        self.pending, self.stall_checks = {}, set()
        for state in applied.completed:
            # updatedAt of the first terminal version is the completion time as far as we can know.
            bucket = bucket_id(parse_timestamp(state.created_at))
            self.completions[bucket] = max(state.updated, self.completions.get(bucket, state.updated))
        for op in applied.processed:
            self.recent.add(version_key(op), op.updated)
        self.failed = not applied.ok
        return applied.ok


def version_key(op: EmailOperation) -> str:
    return recent_key(op.id, op.updated_at, fingerprint(op))


def _same_version(known: TrackedOperation, op: EmailOperation) -> bool:
    return known.updated_at == op.updated_at and known.status == op.status and known.stats == op.stats
