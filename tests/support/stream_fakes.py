"""In-memory pieces for the stream consumer: its ledger, and a world where the poller and the consumer
share one API, one state table and one bus (:class:`PollerWorld` plus the push path)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from comms_bridge.poller.claims import LocalClock
from comms_bridge.poller.exceptions import StateStoreError
from comms_bridge.settings import BootstrapMode
from comms_bridge.stream.consumer import BatchOutcome, StreamConsumer
from comms_bridge.stream.ledger import TestEventRecord, TypeSeen
from comms_bridge.stream.runtime import parse_kinesis_records, partial_response
from comms_bridge_tools.kinesis_events import operation_event, raw_event, sink_test_event
from tests.support.operation_factory import ACCOUNT_SID, ts
from tests.support.poller_fakes import PollerWorld

STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/comms-bridge-events"


@dataclass
class MemoryStreamLedger:
    test_events: list[TestEventRecord] = field(default_factory=list)
    types: dict[str, TypeSeen] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    fail = False

    def record_test_event(self, event: TestEventRecord, *, expires_at: int) -> None:
        if self.fail:
            raise StateStoreError("stream ledger PutItem failed: ProvisionedThroughputExceededException")
        self.test_events.append(event)

    def record_types(self, seen: Mapping[str, TypeSeen], *, expires_at: int) -> None:
        for kind, entry in seen.items():
            self.types[kind] = entry
            self.counts[kind] = self.counts.get(kind, 0) + entry.count


@dataclass
class StreamWorld(PollerWorld):
    """:meth:`deliver` is one invocation of the stream consumer with a Kinesis event of ``datas``."""

    ledger: MemoryStreamLedger = field(default_factory=MemoryStreamLedger)
    outcomes: list[BatchOutcome] = field(default_factory=list)
    next_sequence: int = 1

    def consumer(self, local: LocalClock | None = None) -> StreamConsumer:
        config = self.config

        def emits() -> bool:
            checkpoint = self.store.checkpoint
            bootstrapped = checkpoint is not None and checkpoint.bootstrapped
            return bootstrapped or config.bootstrap_mode is BootstrapMode.EMIT

        return StreamConsumer(
            self.api,
            self.store,
            self.sink,
            self.ledger,
            stall_after_seconds=config.stall_after_seconds,
            emits_first_sighting=emits,
            metrics=self,
            local=local or self.wall.clock(),
        )

    def event(self, datas: Sequence[bytes]) -> dict[str, Any]:
        event = raw_event(STREAM_ARN, datas, first_sequence=self.next_sequence)
        self.next_sequence += len(datas)
        return event

    def deliver(self, datas: Sequence[bytes] | dict[str, Any]) -> dict[str, Any]:
        event = datas if isinstance(datas, dict) else self.event(datas)
        outcome = self.consumer().process(parse_kinesis_records(event))
        self.outcomes.append(outcome)
        return partial_response(event, outcome, None)


def pushed(status: str, operation_id: str, seconds: float = 0) -> bytes:
    """The Event Streams delivery of ``operation_id`` entering ``status``."""
    return operation_event(status, operation_id, time=ts(seconds), event_id=f"EV{operation_id[-8:]}{status}")


def sink_test(test_id: str) -> bytes:
    return sink_test_event(test_id, account_sid=ACCOUNT_SID, time=ts(0))
