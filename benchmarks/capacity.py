"""DynamoDB capacity units as on-demand billing counts them, metered at the benchmark's AWS proxy.

moto answers ``ReturnConsumedCapacity`` with a constant, so the units are computed here from the items
themselves, by DynamoDB's rules (developer guide, "Read/write capacity mode" and "Item sizes"):

* reads: a ``GetItem`` or each item of a ``BatchGetItem`` is one unit per 4 KB of its size, rounded up
  (a key with no item still costs one); a ``Query`` sums the sizes of the items it returns and rounds the
  sum up to 4 KB once; an eventually consistent read costs half;
* writes: one unit per 1 KB, rounded up, of the larger of the item before and after the write (a delete:
  the item before), at least one; an action of ``TransactWriteItems`` costs twice that. A write refused by
  its condition is billed as well.

Write sizes need the item *before* the write, which the request does not carry: the meter reads it from
moto's backend (the server runs in the benchmark's own process) before the request is forwarded, and the
item after once it was answered.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final

PUT_EVENTS: Final = "AWSEvents.PutEvents"
READ_UNIT_BYTES: Final = 4096
WRITE_UNIT_BYTES: Final = 1024
_PREFIX: Final = "DynamoDB_20120810."

Key = dict[str, Any]
Lookup = Callable[[str, Key], Mapping[str, Any] | None]
"""(table, key in DynamoDB JSON) -> the item stored under it, in DynamoDB JSON, or None."""


def value_size(value: Mapping[str, Any]) -> int:
    """Bytes DynamoDB counts for one attribute value in its JSON form (``{"S": "..."}``)."""
    kind, content = next(iter(value.items()))
    if kind == "S":
        return len(content.encode())
    if kind == "N":
        return _number_size(content)
    if kind == "B":
        return len(content) * 3 // 4  # base64 text in the JSON
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(item.encode()) for item in content)
    if kind == "NS":
        return sum(_number_size(item) for item in content)
    if kind == "BS":
        return sum(len(item) * 3 // 4 for item in content)
    if kind == "M":
        return 3 + sum(len(name.encode()) + value_size(item) + 1 for name, item in content.items())
    if kind == "L":
        return 3 + sum(value_size(item) + 1 for item in content)
    raise ValueError(f"unknown attribute type {kind!r}")


def _number_size(text: str) -> int:
    """Numbers take one byte per two significant digits plus one."""
    digits = Decimal(text).normalize().as_tuple().digits
    return (len(digits) + 1) // 2 + 1


def item_size(item: Mapping[str, Any]) -> int:
    """An item's size: the attribute names' bytes plus their values'."""
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def read_units(size: int, *, consistent: bool) -> float:
    units = max(1, math.ceil(size / READ_UNIT_BYTES))
    return float(units) if consistent else units / 2


def write_units(size_before: int, size_after: int) -> float:
    return float(max(1, math.ceil(max(size_before, size_after) / WRITE_UNIT_BYTES)))


class CapacityMeter:
    """Read and write units per DynamoDB operation, for the requests the proxy forwards."""

    def __init__(self, lookup: Lookup) -> None:
        self._lookup = lookup
        self._lock = threading.Lock()
        self.read_units: dict[str, float] = {}
        self.write_units: dict[str, float] = {}
        self.event_bytes = 0  # of the PutEvents entries forwarded, as EventBridge sizes them

    def before(self, target: str, body: bytes) -> Callable[[int, bytes], None] | None:
        """Called before a request is forwarded; returns what to call with the answer (status, body)."""
        if target == PUT_EVENTS:
            size = sum(_entry_size(entry) for entry in json.loads(body).get("Entries", []))
            with self._lock:
                self.event_bytes += size
            return None
        if not target.startswith(_PREFIX):
            return None
        operation = target.removeprefix(_PREFIX)
        request = json.loads(body or b"{}")
        if operation in ("GetItem", "BatchGetItem", "Query"):
            return lambda status, answer: self._read(operation, request, status, answer)
        keys = _written_keys(operation, request)
        if not keys:
            return None
        before = [self._size(table, key) for table, key in keys]

        def after(status: int, answer: bytes) -> None:
            factor = 2.0 if operation == "TransactWriteItems" else 1.0
            units = sum(
                factor * write_units(size, self._size(table, key))
                for (table, key), size in zip(keys, before, strict=True)
            )
            with self._lock:
                self.write_units[operation] = self.write_units.get(operation, 0.0) + units

        return after

    def _size(self, table: str, key: Key) -> int:
        item = self._lookup(table, key)
        return 0 if item is None else item_size(item)

    def _read(self, operation: str, request: Mapping[str, Any], status: int, answer: bytes) -> None:
        if status != 200:
            return
        response = json.loads(answer)
        units = 0.0
        if operation == "GetItem":
            item = response.get("Item")
            units = read_units(item_size(item) if item else 0, consistent=_consistent(request))
        elif operation == "Query":
            # The poller projects nothing, so the answer holds the whole items the Query is billed on.
            sizes = [item_size(item) for item in response.get("Items", [])]
            units = read_units(sum(sizes), consistent=_consistent(request))
        else:
            for table, spec in request.get("RequestItems", {}).items():
                found = response.get("Responses", {}).get(table, [])
                unprocessed = response.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
                missing = len(spec.get("Keys", [])) - len(unprocessed) - len(found)
                consistent = _consistent(spec)
                units += sum(read_units(item_size(item), consistent=consistent) for item in found)
                units += missing * read_units(0, consistent=consistent)
        with self._lock:
            self.read_units[operation] = self.read_units.get(operation, 0.0) + units

    def totals(self) -> tuple[dict[str, float], dict[str, float], int]:
        """A snapshot: read units and write units per operation, bytes of events."""
        with self._lock:
            return dict(self.read_units), dict(self.write_units), self.event_bytes


def _entry_size(entry: Mapping[str, Any]) -> int:
    """A PutEvents entry's size as EventBridge counts it (14 bytes of Time + the texts)."""
    texts = [entry.get("Source", ""), entry.get("DetailType", ""), entry.get("Detail", "")]
    return 14 + sum(len(str(text).encode()) for text in [*texts, *entry.get("Resources", [])])


def _consistent(spec: Mapping[str, Any]) -> bool:
    return bool(spec.get("ConsistentRead", False))


def _key_of(item: Mapping[str, Any]) -> Key:
    """The key of an item of the state table (``pk``/``sk``, template.yaml)."""
    return {name: item[name] for name in ("pk", "sk") if name in item}


def _written_keys(operation: str, request: Mapping[str, Any]) -> list[tuple[str, Key]]:
    """(table, key) of every item a write request touches, in order."""
    if operation in ("PutItem", "UpdateItem", "DeleteItem"):
        table = request["TableName"]
        key = request["Key"] if "Key" in request else _key_of(request["Item"])
        return [(table, key)]
    if operation == "TransactWriteItems":
        found = []
        for entry in request.get("TransactItems", []):
            action = next(iter(entry.values()))
            key = action["Key"] if "Key" in action else _key_of(action["Item"])
            found.append((action["TableName"], key))
        return found
    if operation == "BatchWriteItem":
        found = []
        for table, requests in request.get("RequestItems", {}).items():
            for write in requests:
                if "PutRequest" in write:
                    found.append((table, _key_of(write["PutRequest"]["Item"])))
                else:
                    found.append((table, write["DeleteRequest"]["Key"]))
        return found
    return []


def moto_lookup(account_id: str = "123456789012", region: str = "us-east-1") -> Lookup:
    """Items straight from the moto backend of this process (not through the proxy: not counted)."""
    from moto.dynamodb.models import dynamodb_backends  # noqa: PLC0415 - moto is a dev-only dependency

    backend = dynamodb_backends[account_id][region]

    def lookup(table: str, key: Key) -> Mapping[str, Any] | None:
        item = backend.get_item(table, key)
        if item is None:
            return None
        attributes: Mapping[str, Any] = item.to_json()["Attributes"]
        return attributes

    return lookup
