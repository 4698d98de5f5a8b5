"""Conditional writes of the state table (the version protocol of :mod:`comms_bridge.poller.claims`).

One operation's write is a *unit*: its state item, and with it the copy in the active index, so the index
always holds the version the state item holds. Units go out as ``TransactWriteItems`` (100 actions a call);
a unit of a single action goes out as the plain ``PutItem``/``UpdateItem`` (half the write capacity of a
transactional write). A unit whose condition fails is *refused*: reported to the caller, never retried.
The other units of a cancelled transaction are sent again; so are transactions cancelled by a conflict
with another transaction or by throttling, with backoff, until the attempts run out (``StateStoreError``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import ClientError

from comms_bridge.aws.errors import error_code, is_condition_failed, is_retryable
from comms_bridge.aws.retry import Backoff
from comms_bridge.poller.exceptions import StateStoreError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

    from comms_bridge.poller.state_store import StoreCounters

MAX_TRANSACTION_ACTIONS: Final = 100
_CANCELED: Final = "TransactionCanceledException"
_CONDITION_REASON: Final = "ConditionalCheckFailed"


@dataclass(frozen=True)
class Unit:
    """The actions of one operation's write: all of them happen, or none."""

    operation_id: str
    actions: list[TransactWriteItemTypeDef]


class ConditionalWriter:
    def __init__(self, dynamodb: DynamoDBClient, *, retry: Backoff, counters: StoreCounters) -> None:
        self._db = dynamodb
        self.retry = retry
        self.counters = counters

    def write(self, units: Sequence[Unit]) -> set[str]:
        """Send every unit; the operation ids whose unit was refused by its condition."""
        refused: set[str] = set()
        for chunk in _chunks(units):
            refused |= self._send(chunk)
        return refused

    def _send(self, units: list[Unit]) -> set[str]:
        pending = list(units)
        refused: set[str] = set()
        last = "TransactWriteItems: no time left for an attempt"
        for _attempt in self.retry.attempts():
            try:
                self._call(pending)
                return refused
            except ClientError as exc:
                code = error_code(exc)
                if is_condition_failed(exc):  # a single-action unit, sent on its own
                    return refused | {pending[0].operation_id}
                if code == _CANCELED:
                    failed = _refused_units(pending, exc.response.get("CancellationReasons", []))
                    refused |= failed
                    pending = [unit for unit in pending if unit.operation_id not in failed]
                    if not pending:
                        return refused
                    last = f"TransactWriteItems cancelled: {_reason_codes(exc)}"
                    continue
                if not is_retryable(exc):
                    raise StateStoreError(f"state write failed: {code}") from None
                last = f"state write failed: {code}"
        raise StateStoreError(last)

    def _call(self, units: list[Unit]) -> None:
        actions = [action for unit in units for action in unit.actions]
        if len(actions) == 1:
            self._single(actions[0])
        else:
            self.counters.count("TransactWriteItems")
            self._db.transact_write_items(TransactItems=actions)
        for action in actions:
            if "Delete" in action:
                self.counters.items_deleted += 1
            else:
                self.counters.items_written += 1

    def _single(self, action: TransactWriteItemTypeDef) -> None:
        """One action as the plain call it stands for (same condition, half the capacity)."""
        kind, request = next(iter(action.items()))
        arguments: dict[str, Any] = dict(request)  # type: ignore[call-overload]
        self.counters.count(f"{kind}Item")
        if kind == "Put":
            self._db.put_item(**arguments)
        elif kind == "Update":
            self._db.update_item(**arguments)
        else:  # a lone Delete never happens: deletes accompany a state write
            raise ValueError(f"unexpected lone {kind} action")


def _chunks(units: Sequence[Unit]) -> Iterator[list[Unit]]:
    chunk: list[Unit] = []
    size = 0
    for unit in units:
        if chunk and size + len(unit.actions) > MAX_TRANSACTION_ACTIONS:
            yield chunk
            chunk, size = [], 0
        chunk.append(unit)
        size += len(unit.actions)
    if chunk:
        yield chunk


def _refused_units(units: list[Unit], reasons: list[Any]) -> set[str]:
    """The units with an action whose condition failed (reasons are in the order of the actions)."""
    refused: set[str] = set()
    position = 0
    for unit in units:
        for offset in range(len(unit.actions)):
            index = position + offset
            if index < len(reasons) and (reasons[index] or {}).get("Code") == _CONDITION_REASON:
                refused.add(unit.operation_id)
        position += len(unit.actions)
    return refused


def _reason_codes(exc: ClientError) -> str:
    codes = {str((r or {}).get("Code")) for r in exc.response.get("CancellationReasons", [])} - {"None"}
    return ", ".join(sorted(codes)) or "no reason given"
