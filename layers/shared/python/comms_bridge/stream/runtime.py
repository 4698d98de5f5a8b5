"""What a stream consumer container keeps between invocations, and one Kinesis batch end to end.

The consumer shares the poller's environment (contract §2: same state table, bus and source), so the
runtime is the poller's plus the Event Streams ledger; Powertools' batch processor turns the consumer's
failed records into the partial batch response Lambda retries from.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
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
from comms_bridge.stream.consumer import BatchOutcome, StreamConsumer
from comms_bridge.stream.ledger import DynamoStreamLedger
from comms_bridge.stream.records import Skipped, SkipReason, StreamRecord, parse_record


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


@dataclass
class StreamRuntime:
    poller: PollerRuntime
    bootstrapped: bool = False  # once the poller's bootstrap is seen done, it stays done

    @classmethod
    def from_env(cls) -> StreamRuntime:
        return cls(PollerRuntime.from_env())

    def handle(
        self, event: dict[str, Any], context: LambdaContextLike | None, *, metrics: MetricsSink | None = None
    ) -> tuple[dict[str, Any], BatchOutcome]:
        config = self.poller.config
        table = config.require_state_table()
        account = self.poller.account_sid
        budget = TimeBudget(context, margin_seconds=config.safety_margin_seconds)
        # Our own DynamoDB and EventBridge retries stop at this invocation's end, as the poller's.
        time_left = lambda_time_left(context)
        store = DynamoStateStore(
            self.poller.dynamodb,
            table_name=table,
            account_sid=account,
            retry=Backoff().with_deadline(time_left),
        )

        def emits_first_sighting() -> bool:
            if not self.bootstrapped:
                checkpoint = store.load_checkpoint()
                self.bootstrapped = checkpoint is not None and checkpoint.bootstrapped
            return self.bootstrapped or config.bootstrap_mode is BootstrapMode.EMIT

        consumer = StreamConsumer(
            self.poller.comms.with_deadline(budget.deadline),
            store,
            EventPublisher(
                self.poller.events, bus_name=config.event_bus_name, source=config.event_source
            ).with_deadline(time_left),
            DynamoStreamLedger(self.poller.dynamodb, table_name=table, account_sid=account),
            stall_after_seconds=config.stall_after_seconds,
            emits_first_sighting=emits_first_sighting,
            metrics=metrics or NullMetrics(),
            claim_until=budget.claim_until,
        )
        outcome = consumer.process(parse_kinesis_records(event))
        return partial_response(event, outcome, context), outcome
