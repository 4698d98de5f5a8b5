"""EventPublisher against a scripted stand-in for the EventBridge client (no servers)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from comms_bridge.aws.eventbridge import (
    MAX_REQUEST_BYTES,
    EventPublisher,
    EventTooLargeError,
    OutgoingEvent,
)
from comms_bridge.aws.retry import Backoff, lambda_time_left


class ScriptedEvents:
    """Records each PutEvents request; ``fail`` decides per (call number, entry) whether an entry fails."""

    def __init__(self, fail=None, raise_on_calls=()) -> None:
        self.calls: list[list[dict[str, Any]]] = []
        self.fail = fail or (lambda call, entry: False)
        self.raise_on_calls = set(raise_on_calls)

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(Entries)
        number = len(self.calls)
        if number in self.raise_on_calls:
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "PutEvents")
        results = []
        for entry in Entries:
            if self.fail(number, entry):
                results.append({"ErrorCode": "InternalFailure", "ErrorMessage": "try again"})
            else:
                results.append({"EventId": f"id-{number}-{len(results)}"})
        return {"FailedEntryCount": sum("ErrorCode" in r for r in results), "Entries": results}


def events(n: int, size: int = 10) -> list[OutgoingEvent]:
    return [
        OutgoingEvent(
            detail_type="Email Operation Stats Changed", detail={"n": i, "pad": "x" * size}, event_key=f"k{i}"
        )
        for i in range(n)
    ]


def publisher(client: ScriptedEvents, max_attempts: int = 4) -> tuple[EventPublisher, list[float]]:
    sleeps: list[float] = []
    retry = Backoff(max_attempts=max_attempts, base_delay=0.2, max_delay=5.0, sleep=sleeps.append)
    return EventPublisher(client, bus_name="bus", source="twilio.comms", retry=retry), sleeps  # type: ignore[arg-type]


def test_batches_of_ten_in_order() -> None:
    client = ScriptedEvents()
    pub, sleeps = publisher(client)
    result = pub.publish(events(23))
    assert result.ok and [e.event_key for e in result.accepted] == [f"k{i}" for i in range(23)]
    assert [len(c) for c in client.calls] == [10, 10, 3]
    assert pub.put_events_calls == 3 and sleeps == []
    entry = client.calls[0][0]
    assert entry["Source"] == "twilio.comms" and entry["EventBusName"] == "bus"
    assert json.loads(entry["Detail"])["n"] == 0


def test_batches_respect_the_request_size_limit() -> None:
    client = ScriptedEvents()
    pub, _ = publisher(client)
    result = pub.publish(events(5, size=100_000))
    assert result.ok
    assert [len(c) for c in client.calls] == [2, 2, 1]
    for call in client.calls:
        assert (
            sum(len(e["Detail"]) + len(e["Source"]) + len(e["DetailType"]) + 14 for e in call)
            <= MAX_REQUEST_BYTES
        )


def test_oversized_event_is_an_error_not_a_drop() -> None:
    client = ScriptedEvents()
    pub, _ = publisher(client)
    with pytest.raises(EventTooLargeError, match="k0"):
        pub.publish(events(1, size=MAX_REQUEST_BYTES))
    assert client.calls == []


def test_only_failed_entries_are_retried_with_backoff() -> None:
    client = ScriptedEvents(fail=lambda call, entry: call == 1 and json.loads(entry["Detail"])["n"] in (3, 7))
    pub, sleeps = publisher(client)
    result = pub.publish(events(12))
    assert result.ok and len(result.accepted) == 12
    assert [len(c) for c in client.calls] == [10, 2, 2]
    assert [json.loads(e["Detail"])["n"] for e in client.calls[2]] == [3, 7]
    assert sleeps == [0.2]


def test_persistent_failures_come_back() -> None:
    client = ScriptedEvents(fail=lambda call, entry: json.loads(entry["Detail"])["n"] == 1)
    pub, sleeps = publisher(client, max_attempts=3)
    result = pub.publish(events(3))
    assert not result.ok
    assert [f.event.event_key for f in result.failed] == ["k1"]
    assert result.failed[0].error_code == "InternalFailure"
    assert [e.event_key for e in result.accepted] == ["k0", "k2"]
    assert pub.put_events_calls == 3 and sleeps == [0.2, 0.4]


def test_a_failed_request_is_retried_as_a_whole() -> None:
    client = ScriptedEvents(raise_on_calls={1})
    pub, _ = publisher(client)
    result = pub.publish(events(4))
    assert result.ok and pub.put_events_calls == 2


def test_entry_count_mismatch_counts_as_failure() -> None:
    class Short(ScriptedEvents):
        def put_events(self, Entries):
            response = super().put_events(Entries)
            response["Entries"] = response["Entries"][:-1]
            return response

    pub, _ = publisher(Short(), max_attempts=1)
    result = pub.publish(events(2))
    assert len(result.failed) == 2


def test_retries_stop_at_the_lambda_deadline() -> None:
    """Before: the poller's publisher and state store retried without a deadline (the Backoff's time_left
    was never set), so a throttled PutEvents could sleep past the Lambda's end."""
    client = ScriptedEvents(fail=lambda call, entry: True)
    pub, sleeps = publisher(client, max_attempts=6)

    class Context:
        remaining_ms = 1_500

        def get_remaining_time_in_millis(self) -> int:
            return self.remaining_ms

    context = Context()
    time_left = lambda_time_left(context)
    assert time_left is not None and time_left() == 0.5  # less the one second a call may take
    bounded = pub.with_deadline(time_left)
    result = bounded.publish(events(1))
    # Waits of 0.2 then 0.4 fit in the 0.5 s left; 0.8 would not: three calls, not six.
    assert not result.ok and bounded.put_events_calls == 3 and sleeps == [0.2, 0.4]
    assert pub.put_events_calls == 0, "the deadline view counts its own calls"
    assert lambda_time_left(None) is None
