"""One poller run: list, pick candidates, decide, publish, store, advance the checkpoint.

The phases, in order (:meth:`PollerRun._run`): open the active listing (its first response is the API
clock), take the lease (it returns the checkpoint), list the active and the recent sets, find the
departures, list the due hour buckets, fetch the departures no listing showed, save the checkpoint.

Order of guarantees (contract §4):

* an operation's new state is written only after every event of its decision was accepted
  (:mod:`comms_bridge.poller.apply`);
* a listing's watermark (``seenThrough`` for the active and recent lists, ``refreshed`` for an hour
  bucket) is written only after every candidate it produced was published and stored, otherwise the next
  run lists it again (republishes then carry the same ``eventKey``);
* the checkpoint is written by one UpdateItem conditional on this run still holding the lease.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import chain

from comms_bridge.comms.exceptions import CommsApiError, CommsAuthError
from comms_bridge.comms.models import OperationsPage, OperationStatus
from comms_bridge.poller.apply import ApplyTally, ChangeApplier
from comms_bridge.poller.budget import TimeBudget
from comms_bridge.poller.candidates import Candidates
from comms_bridge.poller.change_detection import TrackedOperation
from comms_bridge.poller.checkpoint import (
    BucketState,
    Checkpoint,
    bucket_views,
    drop_future_times,
    next_checkpoint,
)
from comms_bridge.poller.claims import LocalClock
from comms_bridge.poller.config import PollerConfig
from comms_bridge.poller.discovery import (
    HOUR,
    RETENTION,
    RecentVersions,
    bucket_start,
    narrowed_bootstrap_range,
    plan_due,
    plan_ranges,
    scheduled_listing_needed,
)
from comms_bridge.poller.frame import RunFrame
from comms_bridge.poller.ports import (
    EventSink,
    LambdaContextLike,
    Lease,
    MetricsSink,
    NullMetrics,
    OperationsSource,
    StateStore,
)
from comms_bridge.poller.reader import ApiReader
from comms_bridge.poller.state_store import StoreCounters
from comms_bridge.poller.summary import RunStatus, RunSummary
from comms_bridge.settings import BootstrapMode

logger = logging.getLogger("comms_bridge.poller.run")

# Boundaries of a bucket listing overlap by a second: whether startDate/endDate are inclusive is not
# documented, and an operation listed twice costs nothing.
_EDGE = timedelta(seconds=1)


@dataclass(frozen=True)
class _Listed:
    """How the active and recent listings went. ``clean``: no malformed item in them."""

    complete: bool
    clean: bool
    counts: dict[str, int]


class PollerRun:
    """A single run. Build a new one per invocation; the adapters behind the ports may be long-lived."""

    def __init__(
        self,
        *,
        source: OperationsSource,
        store: StateStore,
        lease: Lease,
        sink: EventSink,
        config: PollerConfig,
        context: LambdaContextLike | None = None,
        metrics: MetricsSink | None = None,
        local: LocalClock | None = None,
    ) -> None:
        self.local = local or LocalClock()
        self.budget = TimeBudget(context, margin_seconds=config.safety_margin_seconds, local=self.local)
        self._requests_before = source.request_count
        self._distrusted_before = source.distrusted_dates
        self.source = source.with_deadline(self.budget.deadline)
        self.store = store
        self.lease = lease
        self.sink = sink
        self.config = config
        self.metrics = metrics or NullMetrics()
        self.summary = RunSummary()
        self.tally = ApplyTally()
        self.bootstrap_range: int | None = None  # narrowed by this run: discovery.narrowed_bootstrap_range
        self.reader = ApiReader(
            self.source,
            self.summary,
            self.metrics,
            page_size=config.page_size,
            budget_left=self.budget.left,
            flush=self._flush,
        )

    def _stop_for_time(self) -> None:
        self.summary.stopped_reason = "time budget"

    # -- entry point ----------------------------------------------------------------------------------

    def run(self) -> RunSummary:
        started = time.monotonic()
        try:
            self._run()
        except Exception:
            self.summary.status = RunStatus.FAILED
            raise
        finally:
            if self.lease.held:
                try:
                    self.lease.release()
                except Exception:  # the lease lapses by itself; never mask the run's own outcome
                    logger.warning("could not release the lease; it lapses by itself", exc_info=True)
            self._finish(started)
        return self.summary

    def _run(self) -> None:
        if not self.budget.left():
            self._stop_for_time()
            self.summary.status = RunStatus.PARTIAL
            logger.warning("less time left than POLLER_SAFETY_MARGIN_SECONDS; not starting")
            return
        processing = self._open_active_listing()
        if processing is None:
            return
        frame = self._take_lease()
        if frame is None:
            return
        listed = self._list_active_and_recent(frame, processing)
        if not self._flush(frame):
            self._save(frame, frame.seen_through)
            return
        seen_through = frame.seen_through
        if listed.complete and listed.clean:
            seen_through = frame.mark_recent_listed(listed.counts)
        departed = frame.departures() if listed.complete else {}
        self.summary.departures = len(departed)
        self._list_due_buckets(frame, plan_bucket_listings(frame, self.config, self.source.now(), departed))
        self._fetch_departures(frame, departed)
        self._flush(frame)
        self._save(frame, seen_through)

    # -- phase: start ---------------------------------------------------------------------------------

    def _open_active_listing(self) -> Iterator[OperationsPage] | None:
        """The PROCESSING listing with its first page read, None if that failed. The first request of a
        cold start has no API clock to lean on yet (contract §3), so it takes no startDate: the API itself
        keeps only the retention window."""
        processing = self.reader.pages(status=OperationStatus.PROCESSING)
        try:
            first = next(processing)
        except CommsAuthError:
            raise  # the invocation fails, so that the function's error alarm fires (contract §6)
        except CommsApiError as exc:
            self.reader.fail("active", exc)
            self.summary.status = RunStatus.FAILED
            return None
        return chain([first], processing)

    def _take_lease(self) -> RunFrame | None:
        if self.source.distrusted_dates > self._distrusted_before:
            self._distrust_clock()
            return None
        run_start = self.source.now()
        lease_for = min(self.config.lease_seconds, self.budget.remaining_seconds() + 30)
        checkpoint = self.lease.acquire(run_start, lease_for)
        if checkpoint is None:
            logger.warning("another poller run holds the lease; this one exits without publishing")
            self.metrics.add("LeaseContended", "Count", 1)
            self.summary.status = RunStatus.CONTENDED
            return None
        latest = run_start + timedelta(seconds=self.config.max_clock_skew_seconds)
        checkpoint, future = drop_future_times(checkpoint, latest)
        self.summary.clock_skew_detected += future
        return self._frame(run_start, checkpoint)

    def _distrust_clock(self) -> None:
        """No lease, watermark or checkpoint is written with a distrusted ``Date`` (contract §6); until a run
        can start, the lag alarm (no lag reported) and the clock-skew alarm fire."""
        self.summary.status, self.summary.stopped_reason = RunStatus.PARTIAL, "API clock distrusted"
        logger.warning("the Comms API's Date is farther from the local clock than MAX_CLOCK_SKEW_SECONDS")

    def _frame(self, run_start: datetime, checkpoint: Checkpoint) -> RunFrame:
        cfg = self.config
        recent = RecentVersions.from_stored(checkpoint.recent)
        index = self.store.active_index()
        applier = ChangeApplier(
            self.store,
            self.sink,
            account_sid=self.source.account_sid,
            stall_after_seconds=cfg.stall_after_seconds,
            emit_first_sighting=emits_first_sighting(checkpoint, self.config.bootstrap_mode),
            clock=self.source.now,
            active_index=index,
            tally=self.tally,
            claim_until=self.budget.claim_until,
            local=self.local,
        )
        candidates = Candidates(applier, recent, lookback=cfg.lookback, flush_at=cfg.flush_operations)
        return RunFrame.begin(run_start, checkpoint, index=index, candidates=candidates, config=cfg)

    # -- phase: the active and the recent set ----------------------------------------------------------

    def _list_active_and_recent(self, frame: RunFrame, processing: Iterator[OperationsPage]) -> _Listed:
        """Every run lists the active set (PROCESSING, and SCHEDULED unless
        :func:`~comms_bridge.poller.discovery.scheduled_listing_needed` proves it needless) and the recent
        set; the recent listing reaches further back over adjacent buckets that are due (or fit in its
        pages for free)."""
        skipped_before = self.summary.skipped_malformed
        read = self.reader.read
        active_complete = read(frame, processing, frame.seen_through) and (
            not self._scheduled_listing_needed(frame)
            or read(
                frame,
                self.reader.pages(status=OperationStatus.SCHEDULED, start=frame.run_start - RETENTION - HOUR),
                frame.seen_through,
            )
        )
        self._count_requests("active", self._requests_before)
        mark = self.source.request_count
        counts: dict[str, int] = {}
        recent = frame.recent
        complete = active_complete and read(
            frame, self.reader.pages(start=recent.start), recent.seen_through, counts=counts
        )
        self._count_requests("recent", mark)
        self._check_stalls(frame)
        # A listing with malformed items is not "seen through": the next run lists it again, so a version
        # that was malformed once is not lost. (Departures only need the listing read to the end.)
        return _Listed(complete, self.summary.skipped_malformed == skipped_before, counts)

    def _scheduled_listing_needed(self, frame: RunFrame) -> bool:
        needed = scheduled_listing_needed_for(frame, self.config)
        self.summary.scheduled_listing_skipped = not needed
        return needed

    def _check_stalls(self, frame: RunFrame) -> None:
        """Tracked PROCESSING operations listed again get the stall rule even when unchanged. A baseline
        bootstrap publishes nothing, stalls included: a stall already due then is reported by the first
        run after it."""
        if not emits_first_sighting(frame.checkpoint, self.config.bootstrap_mode):
            return
        for op_id, state in frame.index.items():
            if op_id in frame.listed_ids and state.status is OperationStatus.PROCESSING:
                frame.candidates.check_stall(op_id)

    # -- phase: due buckets (the departures' included) ---------------------------------------------

    def _list_due_buckets(self, frame: RunFrame, ranges: list[list[str]]) -> None:
        """One listing per range, most overdue first, as long as the time budget lasts."""
        mark = self.source.request_count
        for position, group in enumerate(ranges):
            if not self.budget.left():
                self._stop_for_time()
                self.summary.buckets_due_left = sum(len(g) for g in ranges[position:])
                break
            if not self._list_buckets(frame, group):
                views = bucket_views(frame.buckets)
                self.bootstrap_range = narrowed_bootstrap_range(group, views, self.summary)
                break
        self._count_requests("buckets", mark)

    def _list_buckets(self, frame: RunFrame, group: list[str]) -> bool:
        """List adjacent buckets in one range; False when the run should list no more."""
        refreshed = [frame.buckets.get(b, BucketState()).view().refreshed for b in group]
        seen = None if any(r is None for r in refreshed) else min(r for r in refreshed if r is not None)
        counts: dict[str, int] = {}
        date_before = self.source.now()
        skipped_before = self.summary.skipped_malformed
        complete = self.reader.read(
            frame,
            self.reader.pages(
                start=bucket_start(group[0]) - _EDGE, end=bucket_start(group[-1]) + HOUR + _EDGE
            ),
            seen,
            counts=counts,
            unread=in_baseline_bootstrap(frame.checkpoint, self.config.bootstrap_mode)
            and all(r is None for r in refreshed),
        )
        if not complete or frame.candidates.failed:
            return False
        if self.summary.skipped_malformed == skipped_before:
            frame.uncommitted.extend((b, date_before, counts.get(b, 0)) for b in group)
        return True

    # -- phase: fetch departures -----------------------------------------------------------------------

    def _fetch_departures(self, frame: RunFrame, departed: Mapping[str, TrackedOperation]) -> None:
        """Departures no listing showed, fetched one by one (404: the operation left retention)."""
        mark = self.source.request_count
        for op_id, state in departed.items():
            if op_id in frame.listed_ids:
                continue
            if not self.budget.left():
                self._stop_for_time()
                break
            self.reader.fetch_departure(frame, op_id, state)
        self._count_requests("fetch", mark)

    def _count_requests(self, listing: str, since: int) -> None:
        self.summary.requests_by_listing[listing] = self.source.request_count - since

    # -- flush and checkpoint --------------------------------------------------------------------------

    def _flush(self, frame: RunFrame) -> bool:
        """Apply the candidates. The bucket listings completed before it are committed when it succeeds,
        dropped when it fails (their operations are then listed again next run)."""
        ok = frame.candidates.flush()
        if ok:
            for bucket, refreshed, count in frame.uncommitted:
                frame.buckets[bucket] = frame.buckets.get(bucket, BucketState()).listed(refreshed, count)
                self.summary.buckets_refreshed += 1
        else:
            self.summary.status = RunStatus.PARTIAL
        frame.uncommitted.clear()
        return ok

    def _save(self, frame: RunFrame, seen_through: datetime | None) -> None:
        now = self.source.now()
        checkpoint = next_checkpoint(
            frame.checkpoint,
            frame.buckets,
            completions=frame.candidates.completions,
            recent=frame.candidates.recent,
            seen_through=seen_through,
            run_start=frame.run_start,
            now=now,
            lookback=self.config.lookback,
            bootstrap_range=self.bootstrap_range or frame.checkpoint.bootstrap_range,
        )
        # The run's last write: it gives the lease up too (one write of the item instead of two).
        self.store.save_checkpoint(checkpoint, lease_owner=self.lease.owner, release_lease=True)
        self.lease.released_with_checkpoint()
        self.summary.bootstrapped = checkpoint.bootstrapped
        if seen_through is not None:
            # Signed: a checkpoint ahead of the API's clock shows as negative lag, not as none (§6).
            self.summary.checkpoint_lag_seconds = (now - seen_through).total_seconds()

    def _finish(self, started: float) -> None:
        s = self.summary
        s.comms_requests = self.source.request_count - self._requests_before
        s.clock_skew_detected += self.source.distrusted_dates - self._distrusted_before
        s.put_events_calls = self.sink.put_events_calls
        s.duration_ms = int((time.monotonic() - started) * 1000)
        _take_counts(s, self.tally, self.store.counters)
        s.put_metrics(self.metrics)


def scheduled_listing_needed_for(frame: RunFrame, config: PollerConfig) -> bool:
    """Whether this run must list ``status=SCHEDULED`` (the argument is in
    :func:`comms_bridge.poller.discovery.scheduled_listing_needed`)."""
    return scheduled_listing_needed(
        frame.run_start,
        bucket_views(frame.buckets),
        recent_from=frame.recent.start,
        tracking_scheduled=any(s.status is OperationStatus.SCHEDULED for s in frame.index.values()),
        lookback=config.lookback,
    )


def plan_bucket_listings(
    frame: RunFrame, config: PollerConfig, now: datetime, departed: Mapping[str, TrackedOperation]
) -> list[list[str]]:
    """The ranges to list (adjacent buckets sharing a listing), most overdue first; the arithmetic is
    in :mod:`comms_bridge.poller.discovery`."""
    views = bucket_views(frame.buckets)
    due = plan_due(
        now,
        config.cadence,
        views,
        recent_from=frame.recent.start,
        bootstrapped=frame.checkpoint.bootstrapped,
        max_buckets=config.max_buckets_per_run,
        departed=((op_id, state.created_at) for op_id, state in departed.items()),
        block=frame.block,
    )
    return plan_ranges(due, views, bootstrap_range=frame.checkpoint.bootstrap_range)


def emits_first_sighting(checkpoint: Checkpoint, mode: BootstrapMode) -> bool:
    """False only on a baseline bootstrap, which publishes nothing however many runs it takes."""
    return checkpoint.bootstrapped or mode is BootstrapMode.EMIT


def in_baseline_bootstrap(checkpoint: Checkpoint, mode: BootstrapMode) -> bool:
    """A baseline bootstrap reads no state for operations of never-listed buckets: none can exist
    (bucket membership is fixed; operations listed elsewhere before are in the active index or in
    buckets the recent listing covered), and nothing is published for them anyway."""
    return not checkpoint.bootstrapped and mode is BootstrapMode.BASELINE


def _take_counts(s: RunSummary, tally: ApplyTally, counters: StoreCounters) -> None:
    s.changes_detected = tally.changes_detected
    s.events_published = tally.events_published
    s.publish_failures = tally.publish_failures
    s.stale_observations = tally.stale_observations
    s.states_written = tally.states_written
    s.write_conflicts = tally.write_conflicts
    s.claims_recovered = tally.claims_recovered
    s.deferred = tally.deferred
    s.dynamodb_calls = dict(counters.calls)
    s.dynamodb_items_read = counters.items_read
    s.dynamodb_items_written = counters.items_written + counters.items_deleted


def run(
    *,
    source: OperationsSource,
    store: StateStore,
    lease: Lease,
    sink: EventSink,
    config: PollerConfig,
    context: LambdaContextLike | None = None,
    metrics: MetricsSink | None = None,
) -> RunSummary:
    return PollerRun(
        source=source,
        store=store,
        lease=lease,
        sink=sink,
        config=config,
        context=context,
        metrics=metrics,
    ).run()
