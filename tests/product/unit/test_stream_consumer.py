"""The Event Streams consumer with in-memory fakes (contract §7): each record kind, duplicates within and
across batches, fetch and publish failures as batch item failures, the sink test event, and the push path
racing the poll on one operation (both share one table and one bus: one eventKey per change)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from comms_bridge.comms.exceptions import CommsMalformedResponse, CommsNotFound
from comms_bridge.comms.models import OperationStatus
from comms_bridge.poller.checkpoint import Checkpoint
from comms_bridge.poller.claims import StateWrite
from comms_bridge.stream.consumer import BatchOutcome
from comms_bridge.stream.records import (
    OperationEvent,
    SinkTestEvent,
    Skipped,
    SkipReason,
    parse_record,
)
from comms_bridge.stream.runtime import parse_kinesis_records, partial_response
from comms_bridge_tools.kinesis_events import cloud_event
from tests.support.operation_factory import ACCOUNT_SID, T0, operation, operation_id
from tests.support.stream_fakes import STREAM_ARN, StreamWorld, pushed, sink_test

STATUS = "Email Operation Status Changed"
STATS = "Email Operation Stats Changed"
OP1, OP2 = operation_id(1), operation_id(2)


def world(*, bootstrapped: bool = True) -> StreamWorld:
    w = StreamWorld()
    if bootstrapped:
        w.store.checkpoint = Checkpoint(bootstrapped=True)
    return w


def failures(response: dict[str, object]) -> list[str]:
    items = response["batchItemFailures"]
    assert isinstance(items, list)
    return [item["itemIdentifier"] for item in items]


def keys(w: StreamWorld) -> list[tuple[str, str, str]]:
    return [(e.detail["operationId"], e.detail_type, e.event_key) for e in w.sink.events]


# -- parsing -------------------------------------------------------------------------------------------


def test_each_record_kind_is_told_apart() -> None:
    op_event = cloud_event(
        "com.twilio.comms-api.operation.processing",
        {"operation_id": OP1},
        time="2024-06-20T10:00:00Z",
        event_id="EV1",
        data_as_string=True,
    )
    assert parse_record("1", op_event) == OperationEvent(
        "1", "com.twilio.comms-api.operation.processing", OP1, "2024-06-20T10:00:00Z"
    )
    assert parse_record("2", pushed("COMPLETED", OP1)) == OperationEvent(
        "2", "com.twilio.comms-api.operation.completed", OP1, "2024-06-20T10:00:00Z"
    )
    assert parse_record("3", sink_test("95001c1e-aaaa")) == SinkTestEvent(
        "3",
        "95001c1e-aaaa",
        "2024-06-20T10:00:00Z",
        ACCOUNT_SID,  # the test event's id is the account
    )
    other = cloud_event(
        "com.twilio.messaging.message.sent", {"x": 1}, time="t", event_id="e", data_as_string=False
    )
    cases = {
        b"\xff\xfe": SkipReason.UNDECODABLE,
        b"[1, 2]": SkipReason.UNDECODABLE,
        b'{"type": 7}': SkipReason.UNDECODABLE,
        b'{"type": "com.twilio.comms-api.operation.completed", "data": "{not json"}': SkipReason.UNDECODABLE,
        other: SkipReason.OTHER_TYPE,
        b'{"type": "com.twilio.comms-api.operation.completed", "data": {"operation_id": "op_1"}}': (
            SkipReason.INVALID_ID
        ),
        b'{"type": "com.twilio.comms-api.operation.completed", "data": {}}': SkipReason.INVALID_ID,
        b'{"type": "com.twilio.eventstreams.test-event", "data": "{}"}': SkipReason.INVALID_TEST_ID,
    }
    for data, reason in cases.items():
        parsed = parse_record("9", data)
        assert isinstance(parsed, Skipped) and parsed.reason is reason, (data, parsed)


def test_data_that_is_not_base64_is_skipped_not_raised() -> None:
    event = {"Records": [{"kinesis": {"sequenceNumber": "5", "data": "***"}, "eventID": "x"}]}
    (parsed,) = parse_kinesis_records(event)
    assert isinstance(parsed, Skipped) and parsed.reason is SkipReason.UNDECODABLE


# -- one batch -----------------------------------------------------------------------------------------


def test_an_operation_event_publishes_what_the_api_returns_once_per_distinct_id() -> None:
    w = world()
    w.api.put(operation("PROCESSING", op_id=OP1, total=10, queued=10), operation("SCHEDULED", op_id=OP2))
    # The event says "completed" and repeats: a hint only; the API says PROCESSING; one fetch per id.
    response = w.deliver([pushed("COMPLETED", OP1), pushed("PROCESSING", OP1), pushed("SCHEDULED", OP2)])
    assert failures(response) == []
    assert w.api.request_counts == {"fetch_operation": 2}
    events = w.sink.events
    assert [(e.detail["operationId"], e.detail["status"], e.detail["previousStatus"]) for e in events] == [
        (OP1, "PROCESSING", None),
        (OP2, "SCHEDULED", None),
    ]
    assert w.store.states[OP1].status is OperationStatus.PROCESSING and w.store.states[OP1].claim is None
    assert ("StreamOperationsFetched", 2) in w.metrics


def test_duplicates_across_batches_publish_nothing_new_and_a_change_publishes_in_order() -> None:
    w = world()
    w.api.put(operation("SCHEDULED", op_id=OP1))
    w.deliver([pushed("SCHEDULED", OP1)])
    w.deliver([pushed("SCHEDULED", OP1)])  # Event Streams delivered it again
    assert [e.detail_type for e in w.sink.events] == [STATUS]
    w.api.put(operation("COMPLETED", op_id=OP1, updated=200, total=10, delivered=10))
    w.deliver([pushed("COMPLETED", OP1), pushed("PROCESSING", OP1)])  # reordered, and PROCESSING skipped
    statuses = [(e.detail["previousStatus"], e.detail["status"]) for e in w.sink.events]
    assert statuses == [(None, "SCHEDULED"), ("SCHEDULED", "COMPLETED")], "no status is invented"
    assert len({e.event_key for e in w.sink.events}) == 2


def test_a_fetch_500_fails_only_that_operations_records() -> None:
    w = world()
    w.api.put(operation("PROCESSING", op_id=OP1), operation("PROCESSING", op_id=OP2))
    w.api.fail_next("fetch_operation")  # the first fetch (OP1) answers 500
    event = w.event([pushed("PROCESSING", OP1), pushed("PROCESSING", OP2), pushed("COMPLETED", OP1)])
    sequences = [r["kinesis"]["sequenceNumber"] for r in event["Records"]]
    response = w.deliver(event)
    assert failures(response) == [sequences[0], sequences[2]]
    assert [e.detail["operationId"] for e in w.sink.events] == [OP2]
    assert ("StreamBatchItemFailures", 2) in w.metrics
    # Lambda's retry from the first failure finishes it, and OP2 is not published again.
    retry = {"Records": event["Records"]}
    assert failures(w.deliver(retry)) == []
    assert [e.detail["operationId"] for e in w.sink.events] == [OP2, OP1]


def test_a_refused_publish_is_a_batch_item_failure_and_the_retry_uses_the_same_key() -> None:
    w = world()
    w.api.put(operation("PROCESSING", op_id=OP1))
    w.sink.refuse = lambda event: True
    event = w.event([pushed("PROCESSING", OP1)])
    assert failures(w.deliver(event)) == [event["Records"][0]["kinesis"]["sequenceNumber"]]
    w.sink.refuse = lambda event: False
    assert failures(w.deliver(event)) == []
    (published,) = w.sink.events
    assert published.detail["status"] == "PROCESSING"


def test_a_state_table_failure_fails_the_operation_records_and_loses_nothing() -> None:
    w = world()
    w.api.put(operation("PROCESSING", op_id=OP1))
    w.store.fail_writes = True
    event = w.event([pushed("PROCESSING", OP1), sink_test("t-1")])
    assert failures(w.deliver(event)) == [event["Records"][0]["kinesis"]["sequenceNumber"]]
    assert w.sink.events == [] and w.ledger.test_events[0].test_id == "t-1"
    w.store.fail_writes = False
    assert failures(w.deliver({"Records": event["Records"][:1]})) == []
    assert [e.detail["status"] for e in w.sink.events] == ["PROCESSING"]


def test_skipped_records_never_fail_the_batch_and_each_reason_is_counted() -> None:
    w = world()
    w.api.put(operation("PROCESSING", op_id=OP2))
    w.api.fail_next("fetch_operation", CommsNotFound("HTTP 404", endpoint="fetch_operation"))
    w.api.fail_next("fetch_operation", CommsMalformedResponse("bad operation", endpoint="fetch_operation"))
    response = w.deliver(
        [
            b"not json",
            cloud_event("com.twilio.voice.call.ringing", {}, time="t", event_id="e", data_as_string=False),
            b'{"type": "com.twilio.comms-api.operation.completed", "data": {"operation_id": "../../x"}}',
            pushed("PROCESSING", operation_id(3)),  # 404
            pushed("PROCESSING", OP2),  # malformed answer
        ]
    )
    assert failures(response) == []
    metrics = dict(w.metrics)
    assert metrics["StreamRecordsSkipped"] == 5
    for reason in ("Undecodable", "OtherType", "InvalidId", "UnknownOperation", "MalformedOperation"):
        assert metrics[f"StreamSkipped{reason}"] == 1
    assert w.sink.events == []


def test_the_sink_test_event_is_recorded_not_published() -> None:
    w = world()
    event = w.event([sink_test("95001c1e-first"), sink_test("95001c1e-second")])
    assert failures(w.deliver(event)) == []
    assert w.sink.events == []
    assert [t.test_id for t in w.ledger.test_events] == ["95001c1e-second"], "the latest Test counts"
    assert w.ledger.counts["com.twilio.eventstreams.test-event"] == 2
    w.ledger.fail = True
    event = w.event([sink_test("95001c1e-third")])
    assert failures(w.deliver(event)) == [event["Records"][0]["kinesis"]["sequenceNumber"]]


def test_before_the_pollers_baseline_bootstrap_a_first_sighting_is_recorded_silently() -> None:
    w = world(bootstrapped=False)
    w.api.put(operation("PROCESSING", op_id=OP1))
    assert failures(w.deliver([pushed("PROCESSING", OP1)])) == []
    assert w.sink.events == [] and w.store.states[OP1].version == 1
    w.env["BOOTSTRAP_MODE"] = "emit"
    w.api.put(operation("COMPLETED", op_id=OP1, updated=300))
    w.deliver([pushed("COMPLETED", OP1)])
    assert [e.detail["status"] for e in w.sink.events] == ["COMPLETED"]


# -- push and poll on one table ------------------------------------------------------------------------


def bootstrapped_poller_world() -> StreamWorld:
    w = StreamWorld()
    w.api.put(operation("PROCESSING", op_id=OP1, total=10, queued=10))
    w.api.advance(120)  # the API clock past the operation's updatedAt (60 s)
    w.run()
    for _ in range(3):
        if w.store.checkpoint is not None and w.store.checkpoint.bootstrapped:
            break
        w.api.advance(60)
        w.run()
    assert w.store.checkpoint is not None and w.store.checkpoint.bootstrapped
    w.sink.drain()
    return w


@pytest.mark.parametrize("first", ["push", "poll"])
def test_a_change_seen_by_both_paths_is_published_once_under_one_key(first: str) -> None:
    w = bootstrapped_poller_world()
    w.api.advance(30)
    w.api.put(operation("COMPLETED", op_id=OP1, updated=w_seconds(w), total=10, delivered=10))
    if first == "push":
        w.deliver([pushed("COMPLETED", OP1)])
        w.api.advance(60)
        w.run()
    else:
        w.api.advance(60)
        w.run()
        w.deliver([pushed("COMPLETED", OP1)])
    completed = [
        e for e in w.sink.events if e.detail.get("status") == "COMPLETED" and e.detail_type == STATUS
    ]
    assert len(completed) == 1, keys(w)
    assert len({e.event_key for e in w.sink.events}) == len(w.sink.events)


def test_push_and_poll_racing_on_one_operation_never_both_publish() -> None:
    """The consumer decides against version 1, then the poll writes version 2 before the consumer's
    conditional write lands: the consumer is refused, reads again, finds nothing new, publishes nothing."""
    w = bootstrapped_poller_world()
    w.api.advance(30)
    w.api.put(operation("PROCESSING", op_id=OP1, updated=w_seconds(w), total=10, queued=5, sent=5))

    def poll_first(writes: object) -> None:
        w.store.before_commit = None
        w.run()

    w.store.before_commit = poll_first
    response = w.deliver([pushed("PROCESSING", OP1)])
    assert failures(response) == []
    stats_events = [e for e in w.sink.events if e.detail_type == STATS]
    assert len(stats_events) == 1, keys(w)
    outcome = w.outcomes[-1]
    assert outcome.tally.write_conflicts == 1 and outcome.tally.events_published == 0
    assert w.store.states[OP1].claim is None


def test_a_racing_poll_with_a_newer_version_wins_and_the_consumer_adds_no_older_state() -> None:
    w = bootstrapped_poller_world()
    w.api.advance(30)
    older = operation("PROCESSING", op_id=OP1, updated=w_seconds(w), total=10, queued=5, sent=5)
    w.api.put(older)
    newer_at = w_seconds(w) + 20

    def newer_poll(writes: object) -> None:
        assert isinstance(writes, list) and all(isinstance(x, StateWrite) for x in writes)
        w.api.advance(20)
        w.api.put(operation("COMPLETED", op_id=OP1, updated=newer_at, total=10, delivered=10))
        w.run()

    w.store.before_commit = newer_poll
    w.deliver([pushed("PROCESSING", OP1)])
    assert w.store.states[OP1].status is OperationStatus.COMPLETED, "the slower writer put nothing back"
    assert [e.detail["status"] for e in w.sink.events] == ["COMPLETED"]


def w_seconds(w: StreamWorld) -> float:
    """The API clock of ``w`` in scenario seconds (what ``operation(updated=...)`` takes)."""
    return (w.api.now() - T0).total_seconds()


def test_partial_response_is_powertools_shape() -> None:
    w = world()
    w.api.fail_next("fetch_operation")
    w.api.put(operation("PROCESSING", op_id=OP1))
    event = w.event([pushed("PROCESSING", OP1)])
    assert event["Records"][0]["eventSourceARN"] == STREAM_ARN
    assert json.loads(base64.b64decode(event["Records"][0]["kinesis"]["data"]))["data"] == {
        "operation_id": OP1
    }
    assert w.deliver(event) == {
        "batchItemFailures": [{"itemIdentifier": event["Records"][0]["kinesis"]["sequenceNumber"]}]
    }


def test_the_sample_invocation_event_holds_one_record_of_each_acted_on_kind() -> None:
    sample = json.loads((Path(__file__).resolve().parents[3] / "events" / "stream-kinesis.json").read_text())
    kinds = [type(record) for record in parse_kinesis_records(sample)]
    assert kinds == [OperationEvent, SinkTestEvent]


def test_an_empty_batch_answers_no_failures() -> None:
    assert partial_response({"Records": []}, BatchOutcome(), None) == {"batchItemFailures": []}
