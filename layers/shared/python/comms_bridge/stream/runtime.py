"""What a stream consumer container keeps between invocations, and one Kinesis batch end to end.

The consumer shares the poller's environment (contract §2: same state table, bus and source), so the
runtime is the poller's plus the Event Streams ledger; Powertools' batch processor turns the consumer's
failed records into the partial batch response Lambda retries from.
"""

from __future__ import annotations

import binascii
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord

from comms_bridge.aws.eventbridge import EventPublisher
from comms_bridge.aws.retry import Backoff, lambda_time_left
from comms_bridge.poller.budget import TimeBudget
from comms_bridge.poller.ports import LambdaContextLike, MetricsSink, NullMetrics
from comms_bridge.poller.runtime import PollerRuntime
from comms_bridge.poller.state_store import DynamoStateStore
from comms_bridge.settings import BootstrapMode
from comms_bridge.stream.consumer import BatchOutcome, StreamConsumer, count_outcome, skip
from comms_bridge.stream.ledger import DynamoStreamLedger
from comms_bridge.stream.records import (
    TEST_EVENT_TYPE,
    SinkTestEvent,
    Skipped,
    SkipReason,
    StreamRecord,
    parse_record,
)

logger = logging.getLogger("comms_bridge.stream")


class RecordNotProcessed(Exception):
    """Raised for a record the consumer could not finish: Powertools lists it in ``batchItemFailures``."""


def parse_kinesis_records(event: dict[str, Any]) -> list[StreamRecord]:
    parsed: list[StreamRecord] = []
    for raw in event.get("Records", []):
        record = KinesisStreamRecord(raw)
        sequence = record.kinesis.sequence_number
        try:
            data = record.kinesis.data_as_bytes()
        except (binascii.Error, ValueError, TypeError):
            parsed.append(Skipped(sequence, SkipReason.UNDECODABLE, None, "data is not base64"))
            continue
        parsed.append(parse_record(sequence, data))
    return parsed


def partial_response(event: dict[str, Any], outcome: BatchOutcome, context: Any) -> dict[str, Any]:
    """The ``batchItemFailures`` response for ``outcome``, through Powertools' Kinesis batch processor. A
    batch whose every record failed is reported the same way (not raised): Lambda retries from the first."""

    if not event.get("Records"):  # Powertools refuses an empty batch; Lambda never sends one
        return {"batchItemFailures": []}

    def handle(record: KinesisStreamRecord) -> None:
        reason = outcome.failed.get(record.kinesis.sequence_number)
        if reason is not None:
            raise RecordNotProcessed(reason)

    processor = BatchProcessor(event_type=EventType.KinesisDataStreams, raise_on_entire_batch_failure=False)
    response = process_partial_response(
        event=event, record_handler=handle, processor=processor, context=context
    )
    return dict(response)


def route(
    records: Sequence[StreamRecord], watched: Collection[str]
) -> tuple[dict[str, list[StreamRecord]], list[Skipped]]:
    """Each record to its account (``watched``: the stack's accounts). A record naming no account goes to
    the only watched one; with several it is skipped, as is one naming an account not watched."""
    routed: dict[str, list[StreamRecord]] = {}
    unrouted: list[Skipped] = []
    only = next(iter(watched)) if len(watched) == 1 else None
    for record in records:
        if isinstance(record, Skipped):
            unrouted.append(record)
            continue
        kind = TEST_EVENT_TYPE if isinstance(record, SinkTestEvent) else record.type
        account = record.account_sid or only
        if account is None:
            unrouted.append(
                Skipped(record.sequence, SkipReason.NO_ACCOUNT, kind, "the record names no AC SID")
            )
        elif account not in watched:
            unrouted.append(
                Skipped(record.sequence, SkipReason.UNWATCHED_ACCOUNT, kind, f"account {account}")
            )
        else:
            routed.setdefault(account, []).append(record)
    return routed, unrouted


@dataclass
class StreamRuntime:
    poller: PollerRuntime
    # Per account: once its poller's bootstrap is seen done, it stays done.
    bootstrapped: set[str] = field(default_factory=set)

    @classmethod
    def from_env(cls) -> StreamRuntime:
        return cls(PollerRuntime.from_env())

    def handle(
        self, event: dict[str, Any], context: LambdaContextLike | None, *, metrics: MetricsSink | None = None
    ) -> tuple[dict[str, Any], BatchOutcome]:
        """Routes the batch's records by account; each account's share goes through that account's
        client, state and ledger. An account's failure fails only its records."""
        sink = metrics or NullMetrics()
        accounts = self.poller.accounts.account_secrets()
        routed, unrouted = route(parse_kinesis_records(event), accounts)
        outcome = BatchOutcome(records=len(unrouted))
        for skipped in unrouted:
            skip(outcome, skipped.sequence, skipped.reason, skipped.type, skipped.detail)
        for account, records in routed.items():
            try:
                self._handle_account(accounts[account], records, outcome, context)
            except Exception as exc:  # one account's trouble fails its own records only
                logger.exception("the account's records go back for a retry", extra={"accountSid": account})
                for record in records:
                    outcome.failed[record.sequence] = f"account failed: {type(exc).__name__}"
        count_outcome(outcome, sink)
        return partial_response(event, outcome, context), outcome

    def _handle_account(
        self,
        secret: str,
        records: list[StreamRecord],
        outcome: BatchOutcome,
        context: LambdaContextLike | None,
    ) -> None:
        config = self.poller.config
        table = config.require_state_table()
        comms = self.poller.comms(secret or None)
        account_sid = comms.account_sid
        budget = TimeBudget(context, margin_seconds=config.safety_margin_seconds)
        # Our own DynamoDB and EventBridge retries stop at this invocation's end, as the poller's.
        time_left = lambda_time_left(context)
        store = DynamoStateStore(
            self.poller.dynamodb,
            table_name=table,
            account_sid=account_sid,
            retry=Backoff().with_deadline(time_left),
        )

        def emits_first_sighting() -> bool:
            if account_sid not in self.bootstrapped:
                checkpoint = store.load_checkpoint()
                if checkpoint is not None and checkpoint.bootstrapped:
                    self.bootstrapped.add(account_sid)
            return account_sid in self.bootstrapped or config.bootstrap_mode is BootstrapMode.EMIT

        StreamConsumer(
            comms.with_deadline(budget.deadline),
            store,
            EventPublisher(
                self.poller.events, bus_name=config.event_bus_name, source=config.event_source
            ).with_deadline(time_left),
            DynamoStreamLedger(self.poller.dynamodb, table_name=table, account_sid=account_sid),
            stall_after_seconds=config.stall_after_seconds,
            emits_first_sighting=emits_first_sighting,
            metrics=NullMetrics(),
            claim_until=budget.claim_until,
        ).handle(records, outcome)
