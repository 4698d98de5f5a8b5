"""One Kinesis batch of Event Streams records, handled as contract §7 says.

Each distinct operation id of the batch is fetched once, and what the API returns goes through the
poller's own :class:`~comms_bridge.poller.apply.ChangeApplier`: the same decision, the same ``eventKey``,
the same per-operation order and the same conditional state writes, so a change the poller saw first is
not published again here and the other way round. The event's type and time are never published: the
API's answer is. A record whose operation could not be fetched or published is reported back (its
sequence number) for a Lambda retry; skipped records never fail the batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from comms_bridge.comms.exceptions import (
    CommsApiError,
    CommsAuthError,
    CommsMalformedResponse,
    CommsNotFound,
)
from comms_bridge.comms.models import format_timestamp
from comms_bridge.poller.apply import ApplyTally, ChangeApplier, Observation
from comms_bridge.poller.claims import LocalClock
from comms_bridge.poller.exceptions import StateStoreError
from comms_bridge.poller.ports import EventSink, MetricsSink, OperationsSource, StateStore
from comms_bridge.stream.ledger import EXPIRES_AFTER_SECONDS, TestEventRecord, TypeSeen
from comms_bridge.stream.ports import StreamLedger
from comms_bridge.stream.records import (
    TEST_EVENT_TYPE,
    OperationEvent,
    SinkTestEvent,
    Skipped,
    SkipReason,
    StreamRecord,
)

logger = logging.getLogger("comms_bridge.stream")


@dataclass
class BatchOutcome:
    """``failed``: sequence number -> why (each goes back in ``batchItemFailures``)."""

    records: int = 0
    operations: int = 0  # distinct operation ids in the batch
    fetched: int = 0
    skipped: dict[SkipReason, int] = field(default_factory=dict)
    test_ids: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    tally: ApplyTally = field(default_factory=ApplyTally)

    def as_dict(self) -> dict[str, object]:
        return {
            "records": self.records,
            "operations": self.operations,
            "fetched": self.fetched,
            "skipped": {str(reason): count for reason, count in self.skipped.items()},
            "testEvents": len(self.test_ids),
            "failedRecords": len(self.failed),
            "eventsPublished": self.tally.events_published,
            "changesDetected": self.tally.changes_detected,
            "writeConflicts": self.tally.write_conflicts,
            "staleObservations": self.tally.stale_observations,
        }


class StreamConsumer:
    """``emits_first_sighting``: whether a new operation is announced (the poller's bootstrap rule, read
    once per batch: False until the poller's baseline bootstrap finished). ``claim_until``: see
    :class:`ChangeApplier`."""

    def __init__(
        self,
        source: OperationsSource,
        store: StateStore,
        sink: EventSink,
        ledger: StreamLedger,
        *,
        stall_after_seconds: int,
        emits_first_sighting: Callable[[], bool],
        metrics: MetricsSink,
        claim_until: Callable[[], int] | None = None,
        local: LocalClock | None = None,
    ) -> None:
        self.source = source
        self.store = store
        self.sink = sink
        self.ledger = ledger
        self.stall_after_seconds = stall_after_seconds
        self.emits_first_sighting = emits_first_sighting
        self.metrics = metrics
        self.claim_until = claim_until
        self.local = local or LocalClock()

    def process(self, records: Sequence[StreamRecord]) -> BatchOutcome:
        outcome = self.handle(records, BatchOutcome())
        count_outcome(outcome, self.metrics)
        return outcome

    def handle(self, records: Sequence[StreamRecord], outcome: BatchOutcome) -> BatchOutcome:
        """``records`` into ``outcome`` (one account's share of a batch), without counting metrics."""
        outcome.records += len(records)
        for record in records:
            if isinstance(record, Skipped):
                skip(outcome, record.sequence, record.reason, record.type, record.detail)
        self._record_test_events(outcome, [r for r in records if isinstance(r, SinkTestEvent)])
        events = [r for r in records if isinstance(r, OperationEvent)]
        failed_ids = self._apply(outcome, events)
        for event in events:
            if event.operation_id in failed_ids:
                outcome.failed[event.sequence] = failed_ids[event.operation_id]
        self._record_types(outcome, events)
        return outcome

    # -- operation events --------------------------------------------------------------------------------

    def _apply(self, outcome: BatchOutcome, events: Sequence[OperationEvent]) -> dict[str, str]:
        """Fetch each distinct id once and apply the answers; the ids that failed, with why."""
        first_sequence: dict[str, str] = {}
        for event in events:
            first_sequence.setdefault(event.operation_id, event.sequence)
        outcome.operations += len(first_sequence)
        failed: dict[str, str] = {}
        observed: dict[str, Observation] = {}
        for op_id, sequence in first_sequence.items():
            try:
                operation = self.source.fetch_operation(op_id)
            except CommsNotFound:
                skip(outcome, sequence, SkipReason.UNKNOWN_OPERATION, None, "the API answered 404")
                continue
            except CommsAuthError:
                # Skipped, not failed: a retry cannot help, and it would hold back the other accounts'
                # records behind this one in the shard. The account's poller fails and alarms; its poll
                # reconciles once the credentials are fixed.
                skip(
                    outcome, sequence, SkipReason.UNAUTHORIZED, None, "the account's credentials were refused"
                )
                continue
            except CommsMalformedResponse as exc:
                skip(outcome, sequence, SkipReason.MALFORMED_OPERATION, None, str(exc)[:300])
                continue
            except CommsApiError as exc:
                failed[op_id] = f"fetch failed: {type(exc).__name__}"
                logger.warning(
                    "could not fetch the operation; its records go back for a retry",
                    extra={"operationId": op_id, "error": str(exc)[:300]},
                )
                continue
            outcome.fetched += 1
            observed[op_id] = Observation(operation, self.source.now())
        if not observed:
            return failed
        applier = ChangeApplier(
            self.store,
            self.sink,
            account_sid=self.source.account_sid,
            stall_after_seconds=self.stall_after_seconds,
            emit_first_sighting=self.emits_first_sighting(),
            clock=self.source.now,
            tally=outcome.tally,
            claim_until=self.claim_until,
            local=self.local,
        )
        try:
            applied = applier.apply(observed)
        except StateStoreError as exc:
            logger.error("state table failed; the batch's operation records go back for a retry: %s", exc)
            return failed | {op_id: "state table failed" for op_id in observed}
        for op_id in applied.failed:
            failed[op_id] = (
                "deferred: another writer holds it" if op_id in applied.deferred else "publish failed"
            )
        return failed

    # -- everything else ---------------------------------------------------------------------------------

    def _record_test_events(self, outcome: BatchOutcome, tests: Sequence[SinkTestEvent]) -> None:
        """The latest test id of the batch is stored (a second Test invalidates the first one anyway)."""
        if not tests:
            return
        for test in tests:
            logger.info(
                "sink test event received", extra={"testId": test.test_id, "sequenceNumber": test.sequence}
            )
            outcome.test_ids.append(test.test_id)
        latest = tests[-1]
        try:
            self.ledger.record_test_event(
                TestEventRecord(latest.test_id, self._arrival(), latest.sequence),
                expires_at=self._expires_at(),
            )
        except StateStoreError as exc:
            logger.error("could not record the sink test event: %s", exc)
            for test in tests:
                outcome.failed[test.sequence] = "test id not recorded"

    def _record_types(self, outcome: BatchOutcome, events: Sequence[OperationEvent]) -> None:
        """Bookkeeping for ``comms-bridge stream status``; a failure here loses nothing that matters."""
        seen: dict[str, TypeSeen] = {}
        arrival = self._arrival()
        for event in events:
            count = seen[event.type].count + 1 if event.type in seen else 1
            seen[event.type] = TypeSeen(event.type, count, arrival, event.time, event.operation_id)
        if outcome.test_ids:
            seen[TEST_EVENT_TYPE] = TypeSeen(TEST_EVENT_TYPE, len(outcome.test_ids), arrival, None, None)
        if not seen:
            return
        try:
            self.ledger.record_types(seen, expires_at=self._expires_at())
        except StateStoreError as exc:
            logger.warning("could not record the event types seen: %s", exc)

    def _arrival(self) -> str:
        return format_timestamp(datetime.fromtimestamp(self.local.time(), UTC))

    def _expires_at(self) -> int:
        return int(self.local.time()) + EXPIRES_AFTER_SECONDS


def skip(outcome: BatchOutcome, sequence: str, reason: SkipReason, kind: str | None, detail: str) -> None:
    outcome.skipped[reason] = outcome.skipped.get(reason, 0) + 1
    logger.warning(
        "skipped an Event Streams record: %s",
        reason.value,
        extra={"sequenceNumber": sequence, "reason": reason.value, "type": kind, "detail": detail},
    )


def count_outcome(outcome: BatchOutcome, metrics: MetricsSink) -> None:
    m = metrics
    m.add("StreamRecords", "Count", outcome.records)
    m.add("StreamOperationsFetched", "Count", outcome.fetched)
    m.add("StreamRecordsSkipped", "Count", sum(outcome.skipped.values()))
    for reason, count in outcome.skipped.items():
        m.add(reason.metric, "Count", count)
    m.add("StreamTestEvents", "Count", len(outcome.test_ids))
    m.add("StreamBatchItemFailures", "Count", len(outcome.failed))
    m.add("EventsPublished", "Count", outcome.tally.events_published)
    m.add("PublishFailures", "Count", outcome.tally.publish_failures)
    m.add("WriteConflicts", "Count", outcome.tally.write_conflicts)
