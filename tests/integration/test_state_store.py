"""StateStore and Lease against DynamoDB in moto (through the fault proxy for throttling)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import boto3
import pytest
from botocore.config import Config

from comms_bridge.change_detection import TrackedOperation
from comms_bridge.lease import Lease
from comms_bridge.models import EmailOperationStats, OperationStatus
from comms_bridge.poller_runtime import AWS_CLIENT_CONFIG
from comms_bridge.state_store import (
    BucketState,
    Checkpoint,
    CheckpointConflict,
    StateStore,
    StateStoreError,
    state_expires_at,
)
from tests.support.aws_fault_proxy import AwsFault, AwsFaultProxy
from tests.support.stack import LocalStack

pytestmark = pytest.mark.integration
ACCOUNT = "AC" + "1" * 32
NOW = datetime(2026, 11, 27, 13, 0, tzinfo=UTC)


@pytest.fixture
def proxy(moto_server) -> Iterator[AwsFaultProxy]:
    proxy = AwsFaultProxy(moto_server.endpoint_url).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def dynamodb(proxy, moto_server, monkeypatch):
    for key, value in moto_server.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint_url)
    return boto3.client("dynamodb", config=AWS_CLIENT_CONFIG)


@pytest.fixture
def table(dynamodb, proxy) -> str:
    stack = LocalStack.provision({"AWS_ENDPOINT_URL": proxy.endpoint_url}, capture_all_events=False)
    proxy.reset_counts()
    return stack.state_table_name


def op_id(n: int) -> str:
    return f"comms_operation_01{n:024d}"


def tracked(n: int, status: OperationStatus = OperationStatus.PROCESSING, sent: int = 0) -> TrackedOperation:
    stats = EmailOperationStats(
        total=10, scheduled=0, queued=0, sent=sent, delivered=0, opened=0, undelivered=0, failed=0, canceled=0
    )
    return TrackedOperation(
        operation_id=op_id(n),
        status=status,
        stats=stats,
        created_at="2026-11-27T12:00:00Z",
        updated_at=f"2026-11-27T12:{n % 60:02d}:00Z",
    )


def store(dynamodb, table: str, **kwargs) -> StateStore:
    return StateStore(dynamodb, table_name=table, account_sid=ACCOUNT, sleep=lambda s: None, **kwargs)


def test_states_round_trip_with_ttl_and_active_index(dynamodb, table) -> None:
    s = store(dynamodb, table)
    states = [tracked(i) for i in range(130)] + [tracked(200, OperationStatus.COMPLETED)]
    s.write_states(states)
    found = s.get_states([op_id(i) for i in range(0, 140)] + [op_id(200)])
    assert found == {state.operation_id: state for state in states}
    assert s.counters.calls["BatchGetItem"] == 2  # 141 keys: 100 + 41
    assert set(s.active_index()) == {op_id(i) for i in range(130)}
    # Completing an operation takes it out of the active index.
    s.write_states([tracked(5, OperationStatus.COMPLETED, sent=10)])
    assert op_id(5) not in s.active_index()
    item = dynamodb.get_item(TableName=table, Key=s.state_key(op_id(5)))["Item"]
    assert int(item["expiresAt"]["N"]) == state_expires_at("2026-11-27T12:00:00Z")
    assert item["status"]["S"] == "COMPLETED"
    s.forget([op_id(6)])
    assert op_id(6) not in s.get_states([op_id(6)]) and op_id(6) not in s.active_index()


def test_batch_calls_are_sized_to_the_limits(dynamodb, table, proxy) -> None:
    s = store(dynamodb, table)
    s.write_states([tracked(i) for i in range(60)])  # 120 requests: state + index entry each
    assert proxy.calls["DynamoDB_20120810.BatchWriteItem"] == 5  # 25 + 25 + 25 + 25 + 20
    assert proxy.entries["DynamoDB_20120810.BatchWriteItem"] == 120


def test_throttling_and_unprocessed_items_are_retried(table, proxy) -> None:
    # Without the SDK's own retries (and their sleeps) the store's retry loop meets the throttling.
    dynamodb = boto3.client("dynamodb", config=Config(retries={"mode": "standard", "total_max_attempts": 1}))
    s = store(dynamodb, table)
    proxy.add(AwsFault("DynamoDB_20120810.BatchWriteItem", "throttle", times=4))
    proxy.add(AwsFault("DynamoDB_20120810.BatchWriteItem", "unprocessed", times=1))
    proxy.add(AwsFault("DynamoDB_20120810.BatchGetItem", "unprocessed", times=1))
    s.write_states([tracked(1), tracked(2)])
    assert set(s.get_states([op_id(1), op_id(2)])) == {op_id(1), op_id(2)}
    assert proxy.calls["DynamoDB_20120810.BatchWriteItem"] == 6


def test_persistent_failure_is_an_error_not_a_silent_loss(dynamodb, table, proxy) -> None:
    s = store(dynamodb, table, max_attempts=3)
    proxy.add(AwsFault("DynamoDB_20120810.BatchWriteItem", "unprocessed", times=None))
    with pytest.raises(StateStoreError, match="unprocessed"):
        s.write_states([tracked(1)])


def test_lease_is_exclusive_lapses_and_guards_the_checkpoint(dynamodb, table) -> None:
    first = Lease(dynamodb, table_name=table, account_sid=ACCOUNT)
    second = Lease(dynamodb, table_name=table, account_sid=ACCOUNT)
    assert first.acquire(NOW, 60)
    assert not second.acquire(NOW, 60)
    s = store(dynamodb, table)
    checkpoint = Checkpoint(
        seen_through="2026-11-27T12:59:00Z", buckets={"2026-11-27T10": BucketState(r="x")}
    )
    s.save_checkpoint(checkpoint, lease_owner=first.owner)
    assert s.load_checkpoint() == checkpoint
    assert first.acquire(NOW, 60)  # re-taking one's own lease is fine
    # The crashed holder never released: a minute later its lease has lapsed and another run takes over.
    later = datetime(2026, 11, 27, 13, 1, 1, tzinfo=UTC)
    assert second.acquire(later, 60)
    with pytest.raises(CheckpointConflict):
        s.save_checkpoint(Checkpoint(), lease_owner=first.owner)
    assert s.load_checkpoint() == checkpoint
    first.release()  # not ours anymore: left alone
    assert not Lease(dynamodb, table_name=table, account_sid=ACCOUNT, owner=uuid.uuid4().hex).acquire(
        later, 60
    )
    second.release()
    assert Lease(dynamodb, table_name=table, account_sid=ACCOUNT).acquire(later, 60)
