"""One poller run: list, pick candidates, decide, publish, store, advance the checkpoint.

Order of guarantees (contract §4):

* an operation's new state is written only after every event of its decision was accepted;
* a listing's watermark (``seenThrough`` for the active and recent lists, ``refreshed`` for an hour
  bucket) is written only after every candidate it produced was published and stored, otherwise the next
  run lists it again (republishes then carry the same ``eventKey``);
* the checkpoint is written by one UpdateItem conditional on this run still holding the lease.

Memory stays bounded by a page plus the candidates (operations that changed), never by the window.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from comms_bridge.aws.eventbridge import EventPublisher, OutgoingEvent
from comms_bridge.comms.client import CommsClient
from comms_bridge.comms.exceptions import CommsApiError, CommsNotFound
from comms_bridge.comms.models import (
    EmailOperation,
    OperationsPage,
    OperationStatus,
    format_timestamp,
    parse_timestamp,
)
from comms_bridge.poller.change_detection import Change, Decision, TrackedOperation, check_stall, decide
from comms_bridge.poller.checkpoint import BucketState, Checkpoint, checkpoint_from_item
from comms_bridge.poller.config import PollerConfig
from comms_bridge.poller.discovery import (
    HOUR,
    RETENTION,
    BucketView,
    RecentVersions,
    bucket_id,
    bucket_start,
    due_buckets,
    extend_recent,
    group_by_bucket,
    is_candidate,
    plan_ranges,
    recent_key,
    recent_start,
    window_buckets,
)
from comms_bridge.poller.lease import Lease
from comms_bridge.poller.state_store import StateStore, fingerprint
from comms_bridge.poller.summary import RunSummary
from comms_bridge.settings import BootstrapMode

logger = logging.getLogger("comms_bridge.poller.run")

# An operation still tracked this long after retention ended is dropped even if the API keeps answering.
_FORGET_AFTER = RETENTION + timedelta(days=1)
# Boundaries of a bucket listing overlap by a second: whether startDate/endDate are inclusive is not
# documented, and an operation listed twice costs nothing.
_EDGE = timedelta(seconds=1)


class LambdaContextLike(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


class MetricsSink(Protocol):
    def add(self, name: str, unit: str, value: float) -> None: ...


class NullMetrics:
    def add(self, name: str, unit: str, value: float) -> None:
        return None


@dataclass
class _Pending:
    observed: EmailOperation
    observed_at: datetime


class PollerRun:
    """A single run. Build a new one per invocation; the clients inside may be long-lived."""

    def __init__(
        self,
        *,
        client: CommsClient,
        store: StateStore,
        lease: Lease,
        publisher: EventPublisher,
        config: PollerConfig,
        context: LambdaContextLike | None = None,
        metrics: MetricsSink | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.lease = lease
        self.publisher = publisher
        self.config = config
        self.context = context
        self.metrics = metrics or NullMetrics()
        self.summary = RunSummary()
        self.known: dict[str, TrackedOperation] = {}
        self.absent: set[str] = set()
        self.pending: dict[str, _Pending] = {}
        self.stall_checks: set[str] = set()
        self.recent = RecentVersions()
        self.bucket_updates: dict[str, BucketState] = {}
        self.completions: dict[str, datetime] = {}
        self.emit_first_sighting = False
        self.indexed: set[str] = set()
        self.buckets: dict[str, BucketState] = {}
        self.listed_buckets: list[tuple[str, datetime, int]] = []
        self.flush_failed = False
        self.blind_bootstrap = False
        self._requests_before = client.request_count

    # -- budget ---------------------------------------------------------------------------------------

    def remaining_seconds(self) -> float:
        if self.context is None:
            return float("inf")
        return self.context.get_remaining_time_in_millis() / 1000.0

    def budget_left(self) -> bool:
        return self.remaining_seconds() >= self.config.safety_margin_seconds

    # -- entry point ----------------------------------------------------------------------------------

    def run(self) -> RunSummary:
        started = time.monotonic()
        previous_deadline = self.client.deadline
        self.client.deadline = lambda: self.remaining_seconds() - self.config.safety_margin_seconds
        try:
            self._run()
        except Exception:
            self.summary.status = "failed"
            raise
        finally:
            self.client.deadline = previous_deadline
            if self.lease.held:
                try:
                    self.lease.release()
                except Exception:  # the lease lapses by itself; never mask the run's own outcome
                    logger.warning("could not release the lease; it lapses by itself", exc_info=True)
            self._finish(started)
        return self.summary

    def _run(self) -> None:
        cfg = self.config
        if not self.budget_left():
            self.summary.stopped_reason = "time budget"
            self.summary.status = "partial"
            logger.warning("less time left than POLLER_SAFETY_MARGIN_SECONDS; not starting")
            return
        # The first request of a cold start has no API clock to lean on yet (contract §3), so it takes no
        # startDate: the API itself keeps only the retention window.
        processing = self._pages(status=OperationStatus.PROCESSING)
        try:
            first = next(processing)
        except CommsApiError as exc:
            self._fail_listing("active", exc)
            self.summary.status = "failed"
            return
        run_start = self.client.now()
        lease_for = min(cfg.lease_seconds, self.remaining_seconds() + 30)
        if not self.lease.acquire(run_start, lease_for):
            logger.warning("another poller run holds the lease; this one exits without publishing")
            self.metrics.add("LeaseContended", "Count", 1)
            self.summary.status = "contended"
            return
        # Taking the lease returned the checkpoint item; a lease that did not read it (dry run) reads it now.
        stored = (
            checkpoint_from_item(self.lease.item) if "pk" in self.lease.item else self.store.load_checkpoint()
        )
        checkpoint = stored or Checkpoint()
        self.recent = RecentVersions.from_stored(checkpoint.recent)
        self.emit_first_sighting = checkpoint.bootstrapped or cfg.bootstrap_mode is BootstrapMode.EMIT
        index = self.store.active_index()
        self.known.update(index)
        self.indexed = set(index)
        # A baseline bootstrap reads no state for operations of never-listed buckets: none can exist
        # (bucket membership is fixed; operations listed elsewhere before are in the active index or
        # in buckets the recent listing covered), and nothing is published for them anyway.
        self.blind_bootstrap = not checkpoint.bootstrapped and cfg.bootstrap_mode is BootstrapMode.BASELINE
        seen_through = _parse(checkpoint.seen_through)
        buckets = dict(checkpoint.buckets)

        # 1. The active set and the recent set, every run. The recent listing reaches further back over
        # adjacent buckets that are due (or fit in its pages for free).
        active_ids: set[str] = set()
        listed_ids: set[str] = set()
        recent_from = recent_start(run_start, cfg.cadence)
        views = {b: BucketView(_parse(s.refreshed), _parse(s.completed)) for b, s in buckets.items()}
        counts = {b: s.count for b, s in buckets.items()}
        recent_seen = seen_through
        if checkpoint.bootstrapped:
            due_now = due_buckets(run_start, cfg.cadence, views, limit=cfg.max_buckets_per_run)
            extra = extend_recent(
                recent_from, due_now, views, counts, page_size=cfg.page_size, window=window_buckets(run_start)
            )
            if extra:
                recent_from = bucket_start(extra[-1])
                extra_refreshed = [r for b in extra if (r := views[b].refreshed) is not None]
                oldest = min(extra_refreshed)
                recent_seen = oldest if seen_through is None else min(seen_through, oldest)
        recent_counts: dict[str, int] = {}
        skipped_before = self.summary.skipped_malformed
        active_complete = self._consume(
            _chain(first, processing), seen_through, listed_ids, active_ids
        ) and self._consume(
            self._pages(status=OperationStatus.SCHEDULED, start=run_start - RETENTION - HOUR),
            seen_through,
            listed_ids,
            active_ids,
        )
        self.summary.requests_by_listing["active"] = self.client.request_count - self._requests_before
        mark = self.client.request_count
        recent_complete = active_complete and self._consume(
            self._pages(start=recent_from), recent_seen, listed_ids, None, recent_counts
        )
        self.summary.requests_by_listing["recent"] = self.client.request_count - mark
        # A listing with malformed items is not "seen through": the next run lists it again, so a version
        # that was malformed once is not lost. (Departures only need the listing read to the end.)
        active_clean = self.summary.skipped_malformed == skipped_before
        # A baseline bootstrap publishes nothing, stalls included, however many runs it takes: a stall
        # already due then is reported by the first run after it.
        if self.emit_first_sighting:
            for op_id, state in index.items():
                still_listed = op_id in listed_ids or op_id in self.pending
                if still_listed and state.status is OperationStatus.PROCESSING:
                    self.stall_checks.add(op_id)
        flushed = self._flush()
        if not flushed:
            self._save(checkpoint, buckets, seen_through, run_start)
            return
        new_seen_through = seen_through
        if recent_complete and active_clean:
            new_seen_through = run_start
            for bucket in window_buckets(run_start):
                if bucket_start(bucket) >= recent_from:
                    old = buckets.get(bucket, BucketState())
                    buckets[bucket] = old.model_copy(
                        update={
                            "refreshed": format_timestamp(run_start),
                            "count": recent_counts.get(bucket, 0),
                        }
                    )

        # 2. Operations that left the active lists: found again through their bucket, else fetched.
        departed: dict[str, TrackedOperation] = {}
        if recent_complete:
            departed = {
                op_id: s for op_id, s in index.items() if op_id not in active_ids and op_id not in listed_ids
            }
        self.summary.departures = len(departed)
        now = self.client.now()
        views = {b: BucketView(_parse(s.refreshed), _parse(s.completed)) for b, s in buckets.items()}
        if checkpoint.bootstrapped:
            due = due_buckets(now, cfg.cadence, views, limit=cfg.max_buckets_per_run)
            due = [b for b in due if bucket_start(b) < recent_from]
        else:
            # Bootstrap lists every bucket once; only the time budget spreads it over runs.
            due = due_buckets(now, cfg.cadence, views, limit=10_000)
        by_bucket = group_by_bucket((op_id, s.created_at) for op_id, s in departed.items())
        window = set(window_buckets(now))
        for bucket, ids in sorted(by_bucket.items()):
            if bucket in window and bucket not in due and bucket_start(bucket) < recent_from and len(ids) > 1:
                due.insert(0, bucket)

        # 3. Due hour buckets, as long as the time budget lasts.
        counts = {b: s.count for b, s in buckets.items()}
        eligible = [b for b in window_buckets(now) if bucket_start(b) < recent_from]
        ranges = plan_ranges(due, views, counts, page_size=cfg.page_size, eligible=eligible)
        mark = self.client.request_count
        self.buckets = buckets
        for position, group in enumerate(ranges):
            if not self.budget_left():
                self.summary.stopped_reason = "time budget"
                self.summary.buckets_due_left = sum(len(g) for g in ranges[position:])
                break
            refreshed = [_parse(buckets.get(b, BucketState()).refreshed) for b in group]
            seen = None if any(r is None for r in refreshed) else min(r for r in refreshed if r is not None)
            listed_counts: dict[str, int] = {}
            date_before = self.client.now()
            skipped_before = self.summary.skipped_malformed
            complete = self._consume(
                self._pages(start=bucket_start(group[0]) - _EDGE, end=bucket_start(group[-1]) + HOUR + _EDGE),
                seen,
                listed_ids,
                None,
                listed_counts,
                unread=self.blind_bootstrap and all(r is None for r in refreshed),
            )
            if not complete or self.flush_failed:
                break
            if self.summary.skipped_malformed != skipped_before:
                continue
            # Committed (its refresh time recorded) by the next flush that succeeds.
            self.listed_buckets.extend((b, date_before, listed_counts.get(b, 0)) for b in group)

        self.summary.requests_by_listing["buckets"] = self.client.request_count - mark
        mark = self.client.request_count
        # 4. Departures no listing showed: fetch them one by one (404 = left retention).
        for op_id, state in departed.items():
            if op_id in listed_ids or op_id in self.pending:
                continue
            if not self.budget_left():
                self.summary.stopped_reason = "time budget"
                break
            self._resolve_departure(op_id, state)

        self.summary.requests_by_listing["fetch"] = self.client.request_count - mark
        self._flush()
        self._save(checkpoint, buckets, new_seen_through, run_start)

    # -- listing --------------------------------------------------------------------------------------

    def _pages(
        self,
        *,
        status: OperationStatus | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> Iterator[OperationsPage]:
        return self.client.list_operations(
            start_date=start, end_date=end, status=status, page_size=self.config.page_size
        )

    def _consume(
        self,
        pages: Iterator[OperationsPage],
        seen_through: datetime | None,
        listed_ids: set[str],
        active_ids: set[str] | None,
        bucket_counts: dict[str, int] | None = None,
        *,
        unread: bool = False,
    ) -> bool:
        """Take every page of one listing; False if it could not be listed to the end."""
        try:
            for page in pages:
                self._take(page, seen_through, listed_ids, active_ids, bucket_counts, unread=unread)
                # Memory stays bounded by a page plus FLUSH_OPERATIONS candidates.
                if len(self.pending) >= self.config.flush_operations and not self._flush():
                    return False
                if page.next_token and not self.budget_left():
                    self.summary.stopped_reason = "time budget"
                    return False
        except CommsApiError as exc:
            self._fail_listing("list", exc)
            return False
        return True

    def _take(
        self,
        page: OperationsPage,
        seen_through: datetime | None,
        listed_ids: set[str],
        active_ids: set[str] | None,
        bucket_counts: dict[str, int] | None,
        *,
        unread: bool = False,
    ) -> None:
        observed_at = self.client.now()
        self.summary.operations_seen += len(page.operations)
        if page.skipped:
            self.summary.skipped_malformed += len(page.skipped)
            for item in page.skipped:
                logger.warning(
                    "skipped a malformed operation from the API",
                    extra={"operationId": item.item_id, "reason": item.reason[:300]},
                )
        for op in page.operations:
            listed_ids.add(op.id)
            if active_ids is not None and not op.status.terminal:
                active_ids.add(op.id)
            if bucket_counts is not None:
                bucket = bucket_id(op.created)
                bucket_counts[bucket] = bucket_counts.get(bucket, 0) + 1
            known = self.known.get(op.id)
            if known is not None:
                # Already known this run (active index, or read/written earlier): compare directly.
                if not _same_version(known, op):
                    self._add_pending(op, observed_at)
                continue
            version = _version_key(op)
            if not is_candidate(
                op.updated_at,
                version,
                seen_through=seen_through,
                lookback=self.config.lookback,
                recent=self.recent,
            ):
                continue
            if unread:
                self.absent.add(op.id)
            self._add_pending(op, observed_at)

    def _add_pending(self, op: EmailOperation, observed_at: datetime) -> None:
        current = self.pending.get(op.id)
        if current is None or op.updated >= current.observed.updated:
            if current is None:
                self.summary.candidates += 1
            self.pending[op.id] = _Pending(op, observed_at)

    def _fail_listing(self, what: str, exc: CommsApiError) -> None:
        message = f"{what}: {type(exc).__name__}: {exc}"
        self.summary.errors.append(message[:500])
        self.summary.status = "partial"
        logger.warning("Comms API listing failed; its watermark stays where it was", extra={"error": message})

    def _resolve_departure(self, op_id: str, state: TrackedOperation) -> None:
        now = self.client.now()
        if now - parse_timestamp(state.created_at) > _FORGET_AFTER:
            self._forget(op_id, "tracked past retention")
            return
        try:
            operation = self.client.fetch_operation(op_id)
        except CommsNotFound:
            self._forget(op_id, "404 from the API: the operation left Twilio's retention")
            return
        except CommsApiError as exc:
            self._fail_listing(f"fetch {op_id}", exc)
            return
        self.summary.fetched += 1
        self._add_pending(operation, self.client.now())

    def _forget(self, op_id: str, reason: str) -> None:
        self.store.forget([op_id])
        self.known.pop(op_id, None)
        self.summary.retention_dropped += 1
        self.metrics.add("RetentionDropped", "Count", 1)
        logger.warning(
            "stopped tracking an active operation: %s (no status is invented)",
            reason,
            extra={"operationId": op_id},
        )

    # -- deciding, publishing, storing -----------------------------------------------------------------

    def _flush(self) -> bool:
        """Decide the pending candidates and due stall checks, publish, store. False if anything failed
        (in this flush or an earlier one of the run). Bucket listings completed before it are committed
        when it succeeds, dropped when it fails (their operations are then listed again next run)."""
        ok = self.flush_failed is False and self._decide_publish_store()
        if ok:
            self._commit_buckets(self.buckets, self.listed_buckets)
        else:
            self.flush_failed = True
        self.listed_buckets = []
        return ok

    def _decide_publish_store(self) -> bool:
        if not self.pending and not self.stall_checks:
            return True
        cfg = self.config
        to_read = [op_id for op_id in self.pending if op_id not in self.known and op_id not in self.absent]
        if to_read:
            found = self.store.get_states(to_read)
            self.known.update(found)
            self.absent.update(set(to_read) - found.keys())
        now = self.client.now()
        decisions: dict[str, Decision] = {}
        for op_id, item in self.pending.items():
            decision = decide(
                self.known.get(op_id),
                item.observed,
                account_sid=cfg.account_sid,
                observed_at=item.observed_at,
                now=now,
                stall_after_seconds=cfg.stall_after_seconds,
                emit_first_sighting=self.emit_first_sighting,
            )
            if decision.stale:
                self.summary.stale_observations += 1
            decisions[op_id] = decision
        for op_id in self.stall_checks - self.pending.keys():
            tracked = self.known.get(op_id)
            if tracked is not None:
                decisions[op_id] = check_stall(
                    tracked,
                    account_sid=cfg.account_sid,
                    observed_at=now,
                    now=now,
                    stall_after_seconds=cfg.stall_after_seconds,
                )
        observed = {op_id: item.observed for op_id, item in self.pending.items()}
        self.pending.clear()
        self.stall_checks.clear()

        failed_ops = self._publish({op_id: d.changes for op_id, d in decisions.items() if d.changes})
        to_store: list[TrackedOperation] = []
        for op_id, decision in decisions.items():
            if op_id in failed_ops or decision.new_state is None:
                continue
            previous = self.known.get(op_id)
            new_state = decision.new_state
            to_store.append(new_state)
            if new_state.status.terminal and previous is not None and not previous.status.terminal:
                # A completion seen happening (not a first sighting, whose completion time is unknown):
                # updatedAt of the first terminal version is the completion time as far as we can know.
                bucket = bucket_id(parse_timestamp(new_state.created_at))
                completed = new_state.updated
                self.completions[bucket] = max(completed, self.completions.get(bucket, completed))
        if to_store:
            # A StateStoreError propagates: the events are out, the state is not; the next run re-decides
            # against the old state and republishes the same eventKeys.
            self.store.write_states(to_store, indexed=self.indexed)
            self.summary.states_written += len(to_store)
        for state in to_store:
            self.known[state.operation_id] = state
            if state.status.terminal:
                self.indexed.discard(state.operation_id)
            else:
                self.indexed.add(state.operation_id)
            self.absent.discard(state.operation_id)
        for op_id, op in observed.items():
            if op_id in failed_ops or decisions[op_id].stale:
                continue
            self.recent.add(_version_key(op), op.updated)
        return not failed_ops

    def _publish(self, changes: dict[str, list[Change]]) -> set[str]:
        """Publish in rounds (every operation's 1st change, then 2nd, ...) so an operation whose earlier
        event failed never gets a later one out. Returns the operations with a failed event."""
        failed_ops: set[str] = set()
        detected = sum(len(c) for c in changes.values())
        self.summary.changes_detected += detected
        rounds = max((len(c) for c in changes.values()), default=0)
        for position in range(rounds):
            batch: list[OutgoingEvent] = []
            owners: dict[str, str] = {}
            for op_id, op_changes in changes.items():
                if position < len(op_changes) and op_id not in failed_ops:
                    change = op_changes[position]
                    batch.append(
                        OutgoingEvent(
                            detail_type=str(change.detail_type),
                            detail=change.detail,
                            event_key=change.event_key,
                        )
                    )
                    owners[change.event_key] = op_id
            if not batch:
                continue
            result = self.publisher.publish(batch)
            self.summary.events_published += len(result.accepted)
            for failure in result.failed:
                op_id = owners[failure.event.event_key]
                failed_ops.add(op_id)
                logger.error(
                    "event not accepted by EventBridge after retries; the operation's state is kept",
                    extra={
                        "operationId": op_id,
                        "eventKey": failure.event.event_key,
                        "errorCode": failure.error_code,
                        "errorMessage": failure.error_message[:300],
                    },
                )
            self.summary.publish_failures += len(result.failed)
        if failed_ops:
            self.summary.status = "partial"
        return failed_ops

    # -- checkpoint -----------------------------------------------------------------------------------

    def _commit_buckets(
        self, buckets: dict[str, BucketState], listed: list[tuple[str, datetime, int]]
    ) -> None:
        for bucket, refreshed, count in listed:
            old = buckets.get(bucket, BucketState())
            buckets[bucket] = old.model_copy(
                update={"refreshed": format_timestamp(refreshed), "count": count}
            )
            self.summary.buckets_refreshed += 1

    def _save(
        self,
        checkpoint: Checkpoint,
        buckets: dict[str, BucketState],
        seen_through: datetime | None,
        run_start: datetime,
    ) -> None:
        now = self.client.now()
        window = set(window_buckets(now))
        for bucket, moment in self.completions.items():
            if bucket in buckets or bucket in window:
                old = buckets.get(bucket, BucketState())
                if old.completed is None or parse_timestamp(old.completed) < moment:
                    buckets[bucket] = old.model_copy(update={"completed": format_timestamp(moment)})
        kept = {b: s for b, s in sorted(buckets.items()) if b in window}
        bootstrapped = checkpoint.bootstrapped or all(
            kept.get(b, BucketState()).refreshed is not None for b in window
        )
        keep_after = (seen_through or run_start) - self.config.lookback
        updated = Checkpoint(
            bootstrapped=bootstrapped,
            seen_through=format_timestamp(seen_through) if seen_through else None,
            last_run_at=format_timestamp(run_start),
            buckets=kept,
            recent=self.recent.to_stored(keep_after=keep_after),
        )
        self.store.save_checkpoint(updated, lease_owner=self.lease.owner)
        self.summary.bootstrapped = bootstrapped
        if seen_through is not None:
            self.summary.checkpoint_lag_seconds = max((now - seen_through).total_seconds(), 0.0)

    def _finish(self, started: float) -> None:
        s = self.summary
        s.comms_requests = self.client.request_count - self._requests_before
        s.put_events_calls = self.publisher.put_events_calls
        s.dynamodb_calls = dict(self.store.counters.calls)
        s.dynamodb_items_read = self.store.counters.items_read
        s.dynamodb_items_written = self.store.counters.items_written + self.store.counters.items_deleted
        s.duration_ms = int((time.monotonic() - started) * 1000)
        m = self.metrics
        m.add("OperationsSeen", "Count", s.operations_seen)
        m.add("ChangesDetected", "Count", s.changes_detected)
        m.add("EventsPublished", "Count", s.events_published)
        m.add("PublishFailures", "Count", s.publish_failures)
        m.add("SkippedMalformedItems", "Count", s.skipped_malformed)
        m.add("CommsApiRequests", "Count", s.comms_requests)
        m.add("RunDurationMs", "Milliseconds", s.duration_ms)
        m.add("StateItemsRead", "Count", s.dynamodb_items_read)
        m.add("StateItemsWritten", "Count", s.dynamodb_items_written)
        m.add("BucketsRefreshed", "Count", s.buckets_refreshed)
        if s.checkpoint_lag_seconds is not None:
            m.add("CheckpointLagSeconds", "Seconds", s.checkpoint_lag_seconds)
        if s.status in ("partial", "failed"):
            m.add("IncompleteRuns", "Count", 1)


def _chain(first: OperationsPage, rest: Iterator[OperationsPage]) -> Iterator[OperationsPage]:
    yield first
    yield from rest


def _version_key(op: EmailOperation) -> str:
    return recent_key(op.id, op.updated_at, fingerprint(op))


def _same_version(known: TrackedOperation, op: EmailOperation) -> bool:
    return known.updated_at == op.updated_at and known.status == op.status and known.stats == op.stats


def _parse(value: str | None) -> datetime | None:
    return parse_timestamp(value) if value else None


def run(
    *,
    client: CommsClient,
    store: StateStore,
    lease: Lease,
    publisher: EventPublisher,
    config: PollerConfig,
    context: LambdaContextLike | None = None,
    metrics: MetricsSink | None = None,
) -> RunSummary:
    return PollerRun(
        client=client,
        store=store,
        lease=lease,
        publisher=publisher,
        config=config,
        context=context,
        metrics=metrics,
    ).run()
