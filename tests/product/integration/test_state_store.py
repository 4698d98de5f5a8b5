"""DynamoStateStore and DynamoLease against DynamoDB in moto (through the fault proxy for throttling): the
version protocol's conditions as DynamoDB evaluates them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.config import Config

from comms_bridge.aws.clients import AWS_CLIENT_CONFIG
from comms_bridge.aws.retry import Backoff
from comms_bridge.comms.models import EmailOperationStats, OperationStatus
from comms_bridge.poller.change_detection import TrackedOperation
from comms_bridge.poller.checkpoint import CHECKPOINT_DOC_MAX_BYTES, BucketState, Checkpoint
from comms_bridge.poller.claims import Claim, IndexAction, Settle, StateWrite, StoredState, new_claim
from comms_bridge.poller.discovery import RECENT_MAX_ENTRIES, RecentVersions, recent_key, window_buckets
from comms_bridge.poller.exceptions import CheckpointConflict, StateStoreError
from comms_bridge.poller.lease import DynamoLease
from comms_bridge.poller.state_store import DynamoStateStore, state_expires_at
from comms_bridge_tools.local_stack import LocalStack
from tests.support.aws_fault_proxy import AwsFault, AwsFaultProxy

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


def store(dynamodb, table: str, max_attempts: int = 6) -> DynamoStateStore:
    retry = Backoff(max_attempts=max_attempts, sleep=lambda s: None)
    return DynamoStateStore(dynamodb, table_name=table, account_sid=ACCOUNT, retry=retry)


def write(
    state: TrackedOperation, expected: int = 0, claim: Claim | None = None, index: IndexAction | None = None
) -> StateWrite:
    if index is None:
        index = IndexAction.DELETE if state.status.terminal else IndexAction.PUT
    return StateWrite(state, expected, claim, index)


def claim(
    owner: str = "run-a", until: int = 2_000_000_000, previous: TrackedOperation | None = None
) -> Claim:
    return new_claim(owner, until, previous, observed_at=NOW, now=NOW + timedelta(seconds=1))


def test_states_round_trip_with_ttl_version_and_active_index(dynamodb, table) -> None:
    s = store(dynamodb, table)
    states = [tracked(i) for i in range(130)] + [tracked(200, OperationStatus.COMPLETED)]
    assert (
        s.commit(
            [write(state, index=IndexAction.NONE if state.status.terminal else None) for state in states]
        )
        == set()
    )
    found = s.get_states([op_id(i) for i in range(0, 140)] + [op_id(200)])
    assert found == {state.operation_id: StoredState.of(state, version=1) for state in states}
    assert s.counters.calls["BatchGetItem"] == 2  # 141 keys: 100 + 41
    index = s.active_index()
    assert set(index) == {op_id(i) for i in range(130)} and {v.version for v in index.values()} == {1}
    # Completing an operation takes it out of the active index, in the same transaction.
    assert s.commit([write(tracked(5, OperationStatus.COMPLETED, sent=10), expected=1)]) == set()
    assert op_id(5) not in s.active_index()
    item = dynamodb.get_item(TableName=table, Key=s.state_key(op_id(5)))["Item"]
    assert int(item["expiresAt"]["N"]) == state_expires_at("2026-11-27T12:00:00Z")
    assert item["status"]["S"] == "COMPLETED" and item["version"]["N"] == "2"
    s.forget([op_id(6)])
    assert op_id(6) not in s.get_states([op_id(6)]) and op_id(6) not in s.active_index()


def test_writes_go_out_in_transactions_of_at_most_100_actions(dynamodb, table, proxy) -> None:
    s = store(dynamodb, table)
    s.commit([write(tracked(i)) for i in range(60)])  # 120 actions: state + index entry each
    assert proxy.calls["DynamoDB_20120810.TransactWriteItems"] == 2  # 50 writes (100 actions) + 10
    assert proxy.entries["DynamoDB_20120810.TransactWriteItems"] == 120
    # A write of one item alone (terminal, no index entry) is the plain conditional PutItem: half the cost.
    s.commit([write(tracked(99, OperationStatus.COMPLETED), index=IndexAction.NONE)])
    assert proxy.calls["DynamoDB_20120810.PutItem"] == 1
    assert s.counters.calls == {"TransactWriteItems": 2, "PutItem": 1}


def test_a_write_lands_only_on_the_version_it_read_and_on_an_unclaimed_item(dynamodb, table) -> None:
    s = store(dynamodb, table)
    first = tracked(1)
    assert s.commit([write(first), write(tracked(2))]) == set()
    # Written meanwhile by someone else (version 1 now): a writer that saw no item is refused.
    assert s.commit([write(tracked(1, sent=1)), write(tracked(2, sent=1), expected=1)]) == {op_id(1)}
    stored = s.get_states([op_id(1), op_id(2)])
    assert stored[op_id(1)].tracked() == first and stored[op_id(2)].version == 2
    # A claimed item refuses every write until its claim is settled, whatever version the writer read.
    assert s.commit([write(tracked(1, sent=2), expected=1, claim=claim(previous=first))]) == set()
    assert s.commit([write(tracked(1, sent=3), expected=2)]) == {op_id(1)}
    held = s.get_states([op_id(1)])[op_id(1)]
    assert held.claim == claim(previous=first) and held.version == 2
    assert s.active_index()[op_id(1)].claim is None, "the index copy never carries a claim"
    # One refused write does not stop the others of its transaction.
    assert s.commit([write(tracked(1, sent=3), expected=2), write(tracked(3))]) == {op_id(1)}
    assert op_id(3) in s.get_states([op_id(3)])


def test_a_claim_is_settled_or_released_only_by_its_owner_at_its_version(dynamodb, table) -> None:
    s = store(dynamodb, table)
    s.commit(
        [write(tracked(1), claim=claim("run-a")), write(tracked(2), claim=claim("run-a", previous=None))]
    )
    assert s.settle([Settle(op_id(1), 1, "run-b"), Settle(op_id(2), 2, "run-a")]) == {op_id(1), op_id(2)}
    assert s.settle([Settle(op_id(1), 1, "run-a", release=True)]) == set()
    released = s.get_states([op_id(1)])[op_id(1)].claim
    assert released is not None and released.until == 0 and not released.in_force(1.0)
    assert s.settle([Settle(op_id(1), 1, "run-a"), Settle(op_id(2), 1, "run-a")]) == set()
    assert all(state.claim is None for state in s.get_states([op_id(1), op_id(2)]).values())
    assert s.settle([Settle(op_id(1), 1, "run-a")]) == {op_id(1)}, "nothing left to settle"


def test_throttled_conflicting_and_unprocessed_calls_are_retried(table, proxy) -> None:
    # Without the SDK's own retries (and their sleeps) the store's retry loop meets the throttling.
    dynamodb = boto3.client("dynamodb", config=Config(retries={"mode": "standard", "total_max_attempts": 1}))
    s = store(dynamodb, table)
    proxy.add(AwsFault("DynamoDB_20120810.TransactWriteItems", "throttle", times=2))
    proxy.add(AwsFault("DynamoDB_20120810.TransactWriteItems", "transaction_conflict", times=2))
    proxy.add(AwsFault("DynamoDB_20120810.BatchGetItem", "unprocessed", times=1))
    assert s.commit([write(tracked(1)), write(tracked(2))]) == set()
    assert set(s.get_states([op_id(1), op_id(2)])) == {op_id(1), op_id(2)}
    assert proxy.calls["DynamoDB_20120810.TransactWriteItems"] == 5
    assert proxy.calls["DynamoDB_20120810.BatchGetItem"] == 2


def test_an_error_no_retry_can_mend_fails_at_once(dynamodb, table, proxy) -> None:
    s = store(dynamodb, "no-such-table", max_attempts=5)
    with pytest.raises(StateStoreError, match="ResourceNotFoundException"):
        s.commit([write(tracked(1))])
    with pytest.raises(StateStoreError, match="ResourceNotFoundException"):
        s.get_states([op_id(1)])
    assert proxy.calls["DynamoDB_20120810.TransactWriteItems"] == 1
    assert proxy.calls["DynamoDB_20120810.BatchGetItem"] == 1


def test_persistent_failure_is_an_error_not_a_silent_loss(dynamodb, table, proxy) -> None:
    s = store(dynamodb, table, max_attempts=3)
    proxy.add(AwsFault("DynamoDB_20120810.TransactWriteItems", "transaction_conflict", times=None))
    with pytest.raises(StateStoreError, match="TransactionConflict"):
        s.commit([write(tracked(1))])
    assert s.get_states([op_id(1)]) == {}


def test_lease_is_exclusive_lapses_and_guards_the_checkpoint(dynamodb, table) -> None:
    first = DynamoLease(dynamodb, table_name=table, account_sid=ACCOUNT)
    second = DynamoLease(dynamodb, table_name=table, account_sid=ACCOUNT)
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
    assert not DynamoLease(dynamodb, table_name=table, account_sid=ACCOUNT, owner=uuid.uuid4().hex).acquire(
        later, 60
    )
    second.release()
    assert DynamoLease(dynamodb, table_name=table, account_sid=ACCOUNT).acquire(later, 60)


def _full_buckets() -> dict[str, BucketState]:
    """Every hour of retention listed and with a completion: the largest bucket map there is."""
    stamp = "2026-11-27T12:59:59.123Z"
    return {bucket: BucketState(r=stamp, c=stamp, n=1000) for bucket in window_buckets(NOW)}


def _versions(count: int) -> RecentVersions:
    recent = RecentVersions()
    for n in range(count):
        updated = NOW - timedelta(seconds=n % 3600)
        recent.add(recent_key(op_id(n), f"{updated:%Y-%m-%dT%H:%M:%S}.123Z", f"{n:016x}"), updated)
    return recent


def test_checkpoint_after_a_burst_stays_under_the_item_limit(dynamodb, table) -> None:
    # A burst: 12,000 versions processed within the lookback (5,000 completions, stats changes, ...).
    lease = DynamoLease(dynamodb, table_name=table, account_sid=ACCOUNT)
    assert lease.acquire(NOW, 60)
    s = store(dynamodb, table)
    checkpoint = Checkpoint(
        bootstrapped=True,
        seen_through="2026-11-27T12:59:00Z",
        buckets=_full_buckets(),
        recent=_versions(12_000).to_stored(keep_after=NOW - timedelta(hours=2)),
    )
    s.save_checkpoint(checkpoint, lease_owner=lease.owner)  # once failed: item over 400 KB
    loaded = s.load_checkpoint()
    assert loaded == checkpoint
    assert len(RecentVersions.from_stored(loaded.recent)) == RECENT_MAX_ENTRIES
    assert len(loaded.model_dump_json(by_alias=True, exclude_none=True)) < 200_000
    # The next run's checkpoint saves too (every later run used to fail the same way).
    s.save_checkpoint(
        loaded.model_copy(update={"last_run_at": "2026-11-27T13:01:00Z"}), lease_owner=lease.owner
    )
    assert s.load_checkpoint().last_run_at == "2026-11-27T13:01:00Z"


def test_an_oversized_checkpoint_is_trimmed_not_refused(dynamodb, table) -> None:
    lease = DynamoLease(dynamodb, table_name=table, account_sid=ACCOUNT)
    assert lease.acquire(NOW, 60)
    s = store(dynamodb, table)
    # More than the cap (the guard is the last line of defence): ~480 KB of recent versions.
    recent = _versions(40_000).to_stored(keep_after=NOW - timedelta(hours=2), max_entries=40_000)
    s.save_checkpoint(Checkpoint(buckets=_full_buckets(), recent=recent), lease_owner=lease.owner)
    loaded = s.load_checkpoint()
    assert loaded is not None and loaded.buckets == _full_buckets()
    doc = loaded.model_dump_json(by_alias=True, exclude_none=True)
    assert CHECKPOINT_DOC_MAX_BYTES * 0.9 < len(doc) <= CHECKPOINT_DOC_MAX_BYTES
    kept = RecentVersions.from_stored(loaded.recent)
    newest = recent_key(op_id(0), f"{NOW:%Y-%m-%dT%H:%M:%S}.123Z", f"{0:016x}")
    assert newest in kept and len(kept) < 40_000
    assert min(loaded.recent) > min(recent)  # the oldest minutes went first


def test_an_active_entry_written_in_the_full_shape_of_earlier_versions_still_loads(dynamodb, table) -> None:
    # What the poller wrote before the compact entries: the state item's attributes under the index key.
    s = store(dynamodb, table)
    old = tracked(7, sent=4).model_copy(update={"stalled_for_updated_at": "2026-11-27T12:07:00Z"})
    item = {
        **s.active_key(old.operation_id),
        "operationId": {"S": old.operation_id},
        "status": {"S": "PROCESSING"},
        "stats": {"M": {name: {"N": str(value)} for name, value in old.stats.as_dict().items()}},
        "createdAt": {"S": old.created_at},
        "updatedAt": {"S": old.updated_at},
        "stalledForUpdatedAt": {"S": "2026-11-27T12:07:00Z"},
        "expiresAt": {"N": str(state_expires_at(old.created_at))},
        "version": {"N": "3"},
    }
    dynamodb.put_item(TableName=table, Item=item)
    dynamodb.put_item(TableName=table, Item={**item, **s.state_key(old.operation_id)})
    assert s.active_index() == {old.operation_id: StoredState.of(old, version=3)}
    # The next write of the operation replaces it with the compact entry, which loads the same.
    newer = tracked(7, sent=5)
    assert s.commit([write(newer, expected=3)]) == set()
    entry = dynamodb.get_item(TableName=table, Key=s.active_key(op_id(7)))["Item"]
    assert set(entry) == {"pk", "sk", "e", "expiresAt"}
    assert entry["e"]["S"] == "4|PROCESSING|2026-11-27T12:07:00Z|2026-11-27T12:00:00Z|10,0,0,0,0,5,0,0,0,0,0|"
    assert s.active_index() == {newer.operation_id: StoredState.of(newer, version=4)}


def test_a_packed_active_entry_keeps_the_stall_marker_and_a_mangled_one_is_an_error(dynamodb, table) -> None:
    s = store(dynamodb, table)
    stalled = tracked(1).model_copy(update={"stalled_for_updated_at": "2026-11-27T12:01:00Z"})
    assert s.commit([write(stalled)]) == set()
    assert s.active_index() == {op_id(1): StoredState.of(stalled, version=1)}
    dynamodb.update_item(
        TableName=table,
        Key=s.active_key(op_id(1)),
        UpdateExpression="SET e = :e",
        ExpressionAttributeValues={":e": {"S": "1|PROCESSING|2026-11-27T12:01:00Z|2026-11-27T12:00:00Z|1|"}},
    )
    with pytest.raises(StateStoreError, match="is not version"):
        s.active_index()


def test_the_checkpoint_write_can_give_the_lease_up_in_the_same_write(dynamodb, table, proxy) -> None:
    first = DynamoLease(dynamodb, table_name=table, account_sid=ACCOUNT)
    assert first.acquire(NOW, 60)
    s = store(dynamodb, table)
    checkpoint = Checkpoint(seen_through="2026-11-27T12:59:00Z")
    proxy.reset_counts()
    s.save_checkpoint(checkpoint, lease_owner=first.owner, release_lease=True)
    first.released_with_checkpoint()
    first.release()  # nothing left to release: no call
    assert proxy.calls == {"DynamoDB_20120810.UpdateItem": 1}
    assert s.load_checkpoint() == checkpoint
    # Free at once for the next run, and the released owner can no longer write the checkpoint.
    second = DynamoLease(dynamodb, table_name=table, account_sid=ACCOUNT)
    assert second.acquire(NOW, 60)
    with pytest.raises(CheckpointConflict):
        s.save_checkpoint(Checkpoint(), lease_owner=first.owner)
