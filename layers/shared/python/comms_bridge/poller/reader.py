"""Reading the Comms API into a run's candidates: listings page by page, departures one by one."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

from comms_bridge.comms.exceptions import (
    CommsApiError,
    CommsAuthError,
    CommsMalformedOperation,
    CommsNotFound,
)
from comms_bridge.comms.models import OperationsPage, OperationStatus, parse_timestamp
from comms_bridge.poller.change_detection import TrackedOperation
from comms_bridge.poller.discovery import RETENTION, bucket_id
from comms_bridge.poller.frame import RunFrame
from comms_bridge.poller.ports import MetricsSink, OperationsSource
from comms_bridge.poller.summary import RunStatus, RunSummary

# The run's logger: what the reader logs is part of the run's story, under the name it always had.
logger = logging.getLogger("comms_bridge.poller.run")

# An operation still tracked this long after retention ended is dropped even if the API keeps answering.
_FORGET_AFTER = RETENTION + timedelta(days=1)


class ApiReader:
    """Turns what the API answers into candidates of the run's frame and counts it in the run's summary.

    ``budget_left``: whether the run may send another request; a listing stops between pages without
    it. ``flush``: applies the candidates (the run's, which also commits finished bucket listings);
    called whenever a page fills them up, so memory stays bounded by a page plus ``FLUSH_OPERATIONS``.
    """

    def __init__(
        self,
        source: OperationsSource,
        summary: RunSummary,
        metrics: MetricsSink,
        *,
        page_size: int,
        budget_left: Callable[[], bool],
        flush: Callable[[RunFrame], bool],
    ) -> None:
        self.source = source
        self.summary = summary
        self.metrics = metrics
        self.page_size = page_size
        self.budget_left = budget_left
        self.flush = flush

    def pages(
        self,
        *,
        status: OperationStatus | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> Iterator[OperationsPage]:
        return self.source.list_operations(
            start_date=start, end_date=end, status=status, page_size=self.page_size
        )

    def read(
        self,
        frame: RunFrame,
        pages: Iterator[OperationsPage],
        seen_through: datetime | None,
        *,
        counts: dict[str, int] | None = None,
        unread: bool = False,
    ) -> bool:
        """Take every page of one listing; False if it could not be listed to the end. ``counts``: filled
        with the operations listed per bucket. ``seen_through``, ``unread``: see :meth:`Candidates.offer`."""
        try:
            for page in pages:
                self._take(frame, page, seen_through, counts, unread=unread)
                if frame.candidates.full and not self.flush(frame):
                    return False
                if page.next_token and not self.budget_left():
                    self.summary.stopped_reason = "time budget"
                    return False
        except CommsAuthError:
            raise  # no later request can succeed: the invocation fails (contract §6)
        except CommsApiError as exc:
            self.fail("list", exc)
            return False
        return True

    def _take(
        self,
        frame: RunFrame,
        page: OperationsPage,
        seen_through: datetime | None,
        counts: dict[str, int] | None,
        *,
        unread: bool,
    ) -> None:
        observed_at = self.source.now()
        self.summary.operations_seen += len(page.operations)
        for item in page.skipped:
            self.skip(item.item_id, item.reason)
        for op in page.operations:
            frame.listed_ids.add(op.id)
            if counts is not None:
                bucket = bucket_id(op.created)
                counts[bucket] = counts.get(bucket, 0) + 1
            if frame.candidates.offer(op, observed_at, seen_through=seen_through, unread=unread):
                self.summary.candidates += 1

    def fetch_departure(self, frame: RunFrame, op_id: str, state: TrackedOperation) -> None:
        """Fetch a tracked operation no listing showed; a 404 means it left Twilio's retention."""
        if self.source.now() - parse_timestamp(state.created_at) > _FORGET_AFTER:
            self._forget(frame, op_id, "tracked past retention")
            return
        try:
            operation = self.source.fetch_operation(op_id)
        except CommsNotFound:
            self._forget(frame, op_id, "404 from the API: the operation left Twilio's retention")
            return
        except CommsMalformedOperation as exc:
            self.skip(op_id, str(exc))  # kept as it was: fetched again by the next run
            return
        except CommsAuthError:
            raise
        except CommsApiError as exc:
            self.fail(f"fetch {op_id}", exc)
            return
        self.summary.fetched += 1
        if frame.candidates.add(operation, self.source.now()):
            self.summary.candidates += 1

    def skip(self, op_id: str | None, reason: str) -> None:
        """A malformed operation (contract §4), or one dated later than the API's clock allows (§6)."""
        self.summary.skipped_malformed += 1
        logger.warning(
            "skipped a malformed operation from the API", extra={"operationId": op_id, "reason": reason[:300]}
        )

    def _forget(self, frame: RunFrame, op_id: str, reason: str) -> None:
        frame.candidates.applier.forget(op_id)
        self.summary.retention_dropped += 1
        self.metrics.add("RetentionDropped", "Count", 1)
        logger.warning(
            "stopped tracking an active operation: %s (no status is invented)",
            reason,
            extra={"operationId": op_id},
        )

    def fail(self, what: str, exc: CommsApiError) -> None:
        message = f"{what}: {type(exc).__name__}: {exc}"
        self.summary.errors.append(message[:500])
        self.summary.status = RunStatus.PARTIAL
        logger.warning("Comms API listing failed; its watermark stays where it was", extra={"error": message})
