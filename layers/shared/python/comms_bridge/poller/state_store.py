"""The poller's DynamoDB state: checkpoint, per-operation state and the active index, in one table.

Key layout (``pk``/``sk`` strings, TTL attribute ``expiresAt``):

=============================  ==============  ===============================================
pk                             sk              item
=============================  ==============  ===============================================
``OP#<account>#<operationId>`` ``STATE``       last recorded version of one operation, its
                                               write counter ``version`` and, while its writer
                                               publishes, a ``claim`` (``claims.py``)
``ACTIVE#<account>``           ``<opId>``      packed copy of the state of an operation last
                                               seen as SCHEDULED/PROCESSING (one Query reads them
                                               all; the fields in one string ``e``)
``CHECKPOINT#<account>``       ``CHECKPOINT``  watermarks, hour buckets, recently processed, and
                                               the lease (``owner``, ``leaseUntil``; ``lease.py``)
=============================  ==============  ===============================================

Reads are ``BatchGetItem`` (100 keys) and one ``Query``, retried for unprocessed keys with backoff. The
Query and a first read of states are eventually consistent (half the read units): every state write is
conditional on the version read, so a stale read costs a refused write and a strongly consistent read
again, never a wrong state or a lost change. State
writes are conditional on the version read (``state_writes.py``: transactions of a state item and its index
copy); ``forget`` and nothing else is a ``BatchWriteItem``. All fail loudly when DynamoDB keeps refusing.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final, TypeVar

from botocore.exceptions import ClientError

from comms_bridge.aws.errors import error_code, is_condition_failed, is_retryable
from comms_bridge.aws.retry import Backoff
from comms_bridge.comms.models import (
    STAT_FIELDS,
    EmailOperation,
    EmailOperationStats,
    OperationStatus,
    parse_timestamp,
)
from comms_bridge.poller.change_detection import TrackedOperation
from comms_bridge.poller.checkpoint import Checkpoint, checkpoint_from_item, fit_checkpoint
from comms_bridge.poller.claims import Claim, IndexAction, Settle, StateWrite, StoredState
from comms_bridge.poller.exceptions import CheckpointConflict, StateStoreError
from comms_bridge.poller.state_writes import ConditionalWriter, Unit

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import (
        AttributeValueTypeDef,
        TransactWriteItemTypeDef,
        WriteRequestTypeDef,
    )

BATCH_GET_MAX: Final = 100
BATCH_WRITE_MAX: Final = 25
STATE_TTL_AFTER_CREATION: Final = timedelta(days=8)
"""Twilio keeps operations 7 days after creation; state outlives that by a day, then TTL removes it."""

Item = dict[str, "AttributeValueTypeDef"]
_T = TypeVar("_T")
logger = logging.getLogger(__name__)


@dataclass
class StoreCounters:
    calls: dict[str, int] = field(default_factory=dict)
    items_read: int = 0
    items_written: int = 0
    items_deleted: int = 0

    def count(self, operation: str) -> None:
        self.calls[operation] = self.calls.get(operation, 0) + 1


def _s(value: str) -> AttributeValueTypeDef:
    return {"S": value}


def _n(value: int) -> AttributeValueTypeDef:
    return {"N": str(value)}


def _epoch(timestamp: str) -> int:
    return int(parse_timestamp(timestamp).timestamp())


def state_expires_at(created_at: str) -> int:
    return _epoch(created_at) + int(STATE_TTL_AFTER_CREATION.total_seconds())


def checkpoint_key(account_sid: str) -> Item:
    """Key of the account's checkpoint item, which also carries the lease (``lease.py``)."""
    return {"pk": _s(f"CHECKPOINT#{account_sid}"), "sk": _s("CHECKPOINT")}


def _tracked_attributes(state: TrackedOperation, version: int) -> Item:
    item: Item = {
        "operationId": _s(state.operation_id),
        "status": _s(state.status.value),
        "stats": {"M": {name: _n(value) for name, value in state.stats.as_dict().items()}},
        "createdAt": _s(state.created_at),
        "updatedAt": _s(state.updated_at),
        "expiresAt": _n(state_expires_at(state.created_at)),
        "version": _n(version),
    }
    if state.stalled_for_updated_at is not None:
        item["stalledForUpdatedAt"] = _s(state.stalled_for_updated_at)
    return item


def _active_attributes(state: TrackedOperation, version: int) -> Item:
    """An active index entry: what a run compares listings with and decides against, in one string
    attribute ``e`` = ``version|status|updatedAt|createdAt|counters|stall marker`` (counters comma-separated
    in ``STAT_FIELDS`` order; the marker may be empty). Half the full item's size, so half the read units of
    the Query that reads them all, and a quarter of its parsing: botocore parses each attribute value
    through the whole AttributeValue shape, so the time goes with the number of attributes."""
    counters = ",".join(str(value) for value in state.stats.as_dict().values())
    fields = (
        str(version),
        state.status.value,
        state.updated_at,
        state.created_at,
        counters,
        state.stalled_for_updated_at or "",
    )
    return {"e": _s("|".join(fields)), "expiresAt": _n(state_expires_at(state.created_at))}


def _active_from_item(item: Mapping[str, Any]) -> StoredState:
    """An active index entry, packed or in the full shape earlier versions wrote."""
    if "stats" in item:
        return _tracked_from_item(item)
    operation_id = item["sk"]["S"]
    fields = item["e"]["S"].split("|")
    counters = fields[4].split(",") if len(fields) == 6 else []
    if len(counters) != len(STAT_FIELDS):
        raise StateStoreError(f"active index entry of {operation_id} is not version|status|...: {fields[:2]}")
    version, status, updated_at, created_at, _, stalled_for = fields
    return StoredState(
        operation_id=operation_id,
        status=OperationStatus(status),
        stats=EmailOperationStats(**dict(zip(STAT_FIELDS, map(int, counters), strict=True))),
        created_at=created_at,
        updated_at=updated_at,
        stalled_for_updated_at=stalled_for or None,
        version=int(version),
    )


def _claim_attribute(claim: Claim) -> AttributeValueTypeDef:
    previous: AttributeValueTypeDef = (
        {"NULL": True} if claim.previous is None else _s(claim.previous.model_dump_json())
    )
    return {
        "M": {
            "owner": _s(claim.owner),
            "until": _n(claim.until),
            "previous": previous,
            "observedAt": _s(claim.observed_at),
            "now": _s(claim.now),
        }
    }


def _claim_from(value: Mapping[str, Any] | None) -> Claim | None:
    if not value:
        return None
    fields = value["M"]
    previous = fields.get("previous", {}).get("S")
    return Claim(
        owner=fields["owner"]["S"],
        until=int(fields["until"]["N"]),
        previous=None if previous is None else TrackedOperation.model_validate_json(previous),
        observed_at=fields["observedAt"]["S"],
        now=fields["now"]["S"],
    )


def _tracked_from_item(item: Mapping[str, Any]) -> StoredState:
    stats = item["stats"]["M"]
    return StoredState(
        operation_id=item["operationId"]["S"],
        status=OperationStatus(item["status"]["S"]),
        stats=EmailOperationStats(**{name: int(stats[name]["N"]) for name in STAT_FIELDS if name in stats}),
        created_at=item["createdAt"]["S"],
        updated_at=item["updatedAt"]["S"],
        stalled_for_updated_at=item.get("stalledForUpdatedAt", {}).get("S"),
        version=int(item.get("version", {}).get("N", 0)),
        claim=_claim_from(item.get("claim")),
    )


class DynamoStateStore:
    """The poller's items of one account in the state table."""

    def __init__(
        self,
        dynamodb: DynamoDBClient,
        *,
        table_name: str,
        account_sid: str,
        retry: Backoff | None = None,
    ) -> None:
        self._db = dynamodb
        self.table_name = table_name
        self.account_sid = account_sid
        self.retry = retry or Backoff()
        self.counters = StoreCounters()
        self._writer = ConditionalWriter(dynamodb, retry=self.retry, counters=self.counters)

    # -- keys -----------------------------------------------------------------------------------------

    def state_key(self, operation_id: str) -> Item:
        return {"pk": _s(f"OP#{self.account_sid}#{operation_id}"), "sk": _s("STATE")}

    def active_key(self, operation_id: str) -> Item:
        return {"pk": _s(f"ACTIVE#{self.account_sid}"), "sk": _s(operation_id)}

    def checkpoint_key(self) -> Item:
        return checkpoint_key(self.account_sid)

    # -- reads ----------------------------------------------------------------------------------------

    def get_states(self, operation_ids: Iterable[str], *, consistent: bool = True) -> dict[str, StoredState]:
        """The recorded state of each id that has one (BatchGetItem; ``consistent``: strongly)."""
        ids = sorted(set(operation_ids))
        found: dict[str, StoredState] = {}

        def read(keys: list[Item]) -> list[Item]:
            response = self._db.batch_get_item(
                RequestItems={self.table_name: {"Keys": keys, "ConsistentRead": consistent}}
            )
            for item in response.get("Responses", {}).get(self.table_name, []):
                state = _tracked_from_item(item)
                found[state.operation_id] = state
                self.counters.items_read += 1
            unprocessed_keys: Any = response.get("UnprocessedKeys", {})
            return list(unprocessed_keys.get(self.table_name, {}).get("Keys", []))

        for start in range(0, len(ids), BATCH_GET_MAX):
            keys: list[Item] = [self.state_key(op_id) for op_id in ids[start : start + BATCH_GET_MAX]]
            self._retry_batch("BatchGetItem", "key(s)", keys, read)
        return found

    def active_index(self) -> dict[str, StoredState]:
        """Every operation recorded as SCHEDULED/PROCESSING, from one (paginated, eventually consistent)
        Query."""
        index: dict[str, StoredState] = {}
        start_key: Item | None = None
        while True:
            kwargs: dict[str, Any] = {
                "TableName": self.table_name,
                "KeyConditionExpression": "pk = :pk",
                "ExpressionAttributeValues": {":pk": _s(f"ACTIVE#{self.account_sid}")},
                "ConsistentRead": False,
            }
            if start_key:
                kwargs["ExclusiveStartKey"] = start_key
            response = self._call("Query", lambda kw=kwargs: self._db.query(**kw))  # type: ignore[misc]
            for item in response.get("Items", []):
                state = _active_from_item(item)
                index[state.operation_id] = state
                self.counters.items_read += 1
            start_key = response.get("LastEvaluatedKey")
            if not start_key:
                return index

    def load_checkpoint(self) -> Checkpoint | None:
        response = self._call(
            "GetItem",
            lambda: self._db.get_item(
                TableName=self.table_name, Key=self.checkpoint_key(), ConsistentRead=True
            ),
        )
        return checkpoint_from_item(response.get("Item") or {})

    # -- writes ---------------------------------------------------------------------------------------

    def commit(self, writes: Sequence[StateWrite]) -> set[str]:
        """Store new states under the version protocol (:mod:`comms_bridge.poller.claims`): each write only
        if its item is still at the version the writer read and unclaimed; a write without a claim takes
        its active index entry along in the same transaction. Returns the operations whose write was
        refused (another writer was first)."""
        units = []
        # One write per operation: a transaction refuses two actions on one item.
        for write in {write.operation_id: write for write in writes}.values():
            units.append(Unit(write.operation_id, self._write_actions(write)))
        return self._writer.write(units)

    def settle(self, settles: Sequence[Settle]) -> set[str]:
        """End claims: remove them (their events are out) and bring the index entry up to date in the same
        transaction, or let them lapse now (``release``). Each only while the item is still at that
        version with that owner's claim; returns the refused ones."""
        units: list[Unit] = []
        for settle in {settle.operation_id: settle for settle in settles}.values():
            actions: list[TransactWriteItemTypeDef] = [{"Update": self._settle_update(settle)}]
            if not settle.release and settle.state is not None:
                actions += self._index_actions(settle.state, settle.version, settle.index)
            units.append(Unit(settle.operation_id, actions))
        return self._writer.write(units)

    def _settle_update(self, settle: Settle) -> Any:
        if settle.release:
            expression, values = "SET #claim.#until = :zero", {":zero": _n(0)}
        else:
            expression, values = "REMOVE #claim", {}
        names = {"#claim": "claim", "#version": "version", "#owner": "owner"}
        if settle.release:
            names["#until"] = "until"
        return {
            "TableName": self.table_name,
            "Key": self.state_key(settle.operation_id),
            "UpdateExpression": expression,
            "ConditionExpression": "#version = :version AND #claim.#owner = :owner",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {
                ":version": _n(settle.version),
                ":owner": _s(settle.owner),
                **values,
            },
        }

    def _index_actions(
        self, state: TrackedOperation, version: int, action: IndexAction
    ) -> list[TransactWriteItemTypeDef]:
        key = self.active_key(state.operation_id)
        if action is IndexAction.PUT:
            item = {**key, **_active_attributes(state, version)}
            return [{"Put": {"TableName": self.table_name, "Item": item}}]
        if action is IndexAction.DELETE:
            return [{"Delete": {"TableName": self.table_name, "Key": key}}]
        return []

    def _write_actions(self, write: StateWrite) -> list[TransactWriteItemTypeDef]:
        attributes = _tracked_attributes(write.state, write.expected + 1)
        item = {**self.state_key(write.operation_id), **attributes}
        if write.claim is not None:
            item["claim"] = _claim_attribute(write.claim)
        version = "attribute_not_exists(#version)" if write.expected == 0 else "#version = :expected"
        put: Any = {
            "TableName": self.table_name,
            "Item": item,
            "ConditionExpression": f"{version} AND attribute_not_exists(#claim)",
            "ExpressionAttributeNames": {"#version": "version", "#claim": "claim"},
        }
        if write.expected:
            put["ExpressionAttributeValues"] = {":expected": _n(write.expected)}
        actions: list[TransactWriteItemTypeDef] = [{"Put": put}]
        if write.claim is None:  # with a claim, the index entry follows when it is settled
            actions += self._index_actions(write.state, write.expected + 1, write.index)
        return actions

    def forget(self, operation_ids: Sequence[str]) -> None:
        """Drop operations that left the API's retention: state and active index entry."""
        requests: list[WriteRequestTypeDef] = []
        for op_id in operation_ids:
            requests.append({"DeleteRequest": {"Key": self.state_key(op_id)}})
            requests.append({"DeleteRequest": {"Key": self.active_key(op_id)}})
        self._batch_write(requests)

    def save_checkpoint(
        self, checkpoint: Checkpoint, *, lease_owner: str, release_lease: bool = False
    ) -> None:
        """Write the checkpoint only while this run still holds the lease (same item, one condition),
        ``recent`` trimmed if the item would grow past the safe size (:func:`fit_checkpoint`).
        ``release_lease``: give the lease up in the same write (a write costs a unit per KB of the whole
        item, and the checkpoint is most of it: one write instead of two)."""
        _, doc = fit_checkpoint(checkpoint)
        expression = "SET doc = :doc REMOVE #owner, leaseUntil" if release_lease else "SET doc = :doc"
        try:
            self._call(
                "UpdateItem",
                lambda: self._db.update_item(
                    TableName=self.table_name,
                    Key=self.checkpoint_key(),
                    UpdateExpression=expression,
                    ConditionExpression="#owner = :owner",
                    ExpressionAttributeNames={"#owner": "owner"},
                    ExpressionAttributeValues={":doc": _s(doc), ":owner": _s(lease_owner)},
                ),
            )
        except ClientError as exc:
            if is_condition_failed(exc):
                raise CheckpointConflict("the lease was lost; checkpoint not written") from None
            raise

    # -- plumbing -------------------------------------------------------------------------------------

    def _batch_write(self, requests: list[WriteRequestTypeDef]) -> None:
        def write(pending: list[WriteRequestTypeDef]) -> list[WriteRequestTypeDef]:
            response = self._db.batch_write_item(RequestItems={self.table_name: pending})
            unprocessed_items: Any = response.get("UnprocessedItems", {})
            unprocessed: list[WriteRequestTypeDef] = list(unprocessed_items.get(self.table_name, []))
            for request in pending:
                if request in unprocessed:
                    continue
                if "PutRequest" in request:
                    self.counters.items_written += 1
                else:
                    self.counters.items_deleted += 1
            return unprocessed

        for start in range(0, len(requests), BATCH_WRITE_MAX):
            self._retry_batch("BatchWriteItem", "item(s)", requests[start : start + BATCH_WRITE_MAX], write)

    def _retry_batch(
        self, operation: str, what: str, pending: list[_T], send: Callable[[list[_T]], list[_T]]
    ) -> None:
        """Send one batch, then whatever ``send`` returns as unprocessed, with backoff; a call failing with a
        retryable error is retried too. StateStoreError once the attempts (or the time) are used up, or at
        once for an error no retry can mend (a missing table, a validation error)."""
        last = f"{operation}: no time left for an attempt"
        for _attempt in self.retry.attempts():
            self.counters.count(operation)
            try:
                pending = send(pending)
            except ClientError as exc:
                if not is_retryable(exc):
                    raise StateStoreError(f"{operation} failed: {error_code(exc)}") from None
                last = f"{operation} failed: {error_code(exc)}"
                continue
            if not pending:
                return
            last = f"{operation} left {len(pending)} {what} unprocessed"
        raise StateStoreError(last)

    def _call(self, operation: str, call: Callable[[], Any]) -> Any:
        """One call, retried on throttling spells longer than botocore's own retries cover."""
        failure: ClientError | None = None
        for attempt in self.retry.attempts():
            self.counters.count(operation)
            try:
                return call()
            except ClientError as exc:
                if not is_retryable(exc) or attempt >= self.retry.max_attempts:
                    raise
                failure = exc
        # The deadline came before the next attempt.
        raise StateStoreError(f"{operation} failed: {error_code(failure) if failure else 'no time left'}")


def fingerprint(state: TrackedOperation | EmailOperation) -> str:
    """Short digest of a version (status, updatedAt, stats): same digest, same version.

    The digest of ``json.dumps([status, updatedAt, stats], separators=(",", ":"))``, the text written out
    by hand (a run computes thousands; the encoder was most of their cost). Digests are stored in the
    checkpoint, so the text must stay byte for byte what it was."""
    stats = state.stats
    counters = ",".join(f'"{name}":{int(getattr(stats, name))}' for name in STAT_FIELDS)
    text = f'["{state.status.value}",{json.dumps(state.updated_at)},{{{counters}}}]'
    return hashlib.sha256(text.encode()).hexdigest()[:16]
