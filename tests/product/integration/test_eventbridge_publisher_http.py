"""EventPublisher against EventBridge in moto: what arrives on the bus, through the fault proxy."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config

from comms_bridge.aws.clients import AWS_CLIENT_CONFIG
from comms_bridge.aws.eventbridge import EventPublisher, OutgoingEvent
from comms_bridge.aws.retry import Backoff
from comms_bridge_tools.local_stack import LocalStack
from tests.support.aws_fault_proxy import AwsFault, AwsFaultProxy

pytestmark = pytest.mark.integration


@pytest.fixture
def proxy(moto_server, monkeypatch) -> Iterator[AwsFaultProxy]:
    proxy = AwsFaultProxy(moto_server.endpoint_url).start()
    for key, value in moto_server.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint_url)
    yield proxy
    proxy.stop()


@pytest.fixture
def stack(proxy) -> LocalStack:
    stack = LocalStack.provision({"AWS_ENDPOINT_URL": proxy.endpoint_url})
    proxy.reset_counts()
    return stack


def publisher(stack: LocalStack, *, sdk_retries: bool = True) -> EventPublisher:
    # Without the SDK's own retries (and their sleeps) a throttle reaches the publisher's retry directly.
    single = Config(retries={"mode": "standard", "total_max_attempts": 1})
    config = AWS_CLIENT_CONFIG if sdk_retries else single
    client = boto3.client("events", config=config)
    retry = Backoff(max_attempts=4, sleep=lambda s: None)
    return EventPublisher(client, bus_name=stack.bus_name, source=stack.event_source, retry=retry)


def events(n: int, pad: int = 0) -> list[OutgoingEvent]:
    return [
        OutgoingEvent(
            "Email Operation Stats Changed", {"eventKey": f"k{i:03d}", "pad": "x" * pad}, f"k{i:03d}"
        )
        for i in range(n)
    ]


def delivered_keys(stack: LocalStack) -> list[str]:
    return sorted(e["detail"]["eventKey"] for e in stack.drain(stack.capture_queue_url, 0.5))


def test_everything_arrives_once_in_batches_of_ten(stack, proxy) -> None:
    pub = publisher(stack)
    result = pub.publish(events(25))
    assert result.ok and len(result.accepted) == 25
    assert proxy.calls["AWSEvents.PutEvents"] == 3 == pub.put_events_calls
    assert delivered_keys(stack) == [f"k{i:03d}" for i in range(25)]


def test_large_entries_split_by_size(stack, proxy) -> None:
    pub = publisher(stack)
    assert pub.publish(events(3, pad=120_000)).ok
    assert proxy.calls["AWSEvents.PutEvents"] == 2  # 2 x 120 KB fit in 256 KB, a third does not


def test_partial_failure_retries_only_the_failed_entries(stack, proxy) -> None:
    proxy.add(AwsFault("AWSEvents.PutEvents", "fail_entries", times=1, entries=lambda i, e: i in (2, 5)))
    pub = publisher(stack)
    result = pub.publish(events(10))
    assert result.ok
    assert proxy.calls["AWSEvents.PutEvents"] == 2
    assert proxy.entries["AWSEvents.PutEvents"] == 12
    assert delivered_keys(stack) == [f"k{i:03d}" for i in range(10)]


def test_throttled_calls_are_retried(stack, proxy) -> None:
    proxy.add(AwsFault("AWSEvents.PutEvents", "throttle", times=2))
    pub = publisher(stack, sdk_retries=False)
    assert pub.publish(events(4)).ok
    assert pub.put_events_calls == proxy.calls["AWSEvents.PutEvents"] == 3
    assert delivered_keys(stack) == [f"k{i:03d}" for i in range(4)]


def test_persistent_entry_failure_is_reported(stack, proxy) -> None:
    proxy.add(
        AwsFault(
            "AWSEvents.PutEvents", "fail_entries", times=None, entries=lambda i, e: "k001" in e["Detail"]
        )
    )
    pub = publisher(stack)
    result = pub.publish(events(3))
    assert [f.event.event_key for f in result.failed] == ["k001"]
    assert result.failed[0].error_code == "InternalFailure"
    assert delivered_keys(stack) == ["k000", "k002"]
