"""moto in server mode on loopback: the AWS side of every integration test, the demo and the benchmarks."""

from __future__ import annotations

import copy
import logging
from typing import Any

from moto.dynamodb import models as _dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from moto.server import ThreadedMotoServer

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


class _TablesByReference:
    """Stands in for the ``copy`` module inside moto's DynamoDB backend: a whole-table ``deepcopy`` (what moto
    takes of every table an action of a TransactWriteItems touches, once per action, to roll back) returns
    the table itself; :func:`_transact_write_items` rolls back the touched items instead. Everything else is
    the real ``copy``."""

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)


_moto_transact_write_items = DynamoDBBackend.transact_write_items


def _transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    """moto's TransactWriteItems with a rollback of the items it touched rather than a deep copy of whole
    tables per action: against a state table of 100k items, one transaction of 100 actions otherwise copies
    ten million items (minutes, and a read timeout), where DynamoDB itself takes milliseconds. The
    semantics are moto's: all actions or none, cancellation reasons in action order."""
    before: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = []
    for entry in transact_items:
        _, action = next(iter(entry.items()))
        name = action.get("TableName")
        if name not in self.tables:
            continue
        table = self.tables[name]
        attributes = [a for a in (table.hash_key_attr, table.range_key_attr) if a is not None]
        key = action["Key"] if "Key" in action else {a: action["Item"][a] for a in attributes}
        current = self.get_item(name, key)
        snapshot = None if current is None else copy.deepcopy(current.to_json()["Attributes"])
        before.append((name, key, snapshot))
    try:
        _moto_transact_write_items(self, transact_items)
    except Exception:
        for name, key, attributes_before in reversed(before):
            if attributes_before is None:
                self.delete_item(name, key)
            else:
                self.put_item(name, attributes_before)
        raise


setattr(_dynamodb_models, "copy", _TablesByReference())  # noqa: B010 - a module attribute moto reads
DynamoDBBackend.transact_write_items = _transact_write_items  # type: ignore[method-assign]


class MotoServer:
    """A ThreadedMotoServer on loopback: on a free port, or on ``port`` (which must be free: moto waits
    forever for a server that could not bind)."""

    def __init__(self, port: int = 0) -> None:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.endpoint_url = ""

    def start(self) -> MotoServer:
        self._server.start()
        port = self._server._server.server_port  # type: ignore[union-attr]
        self.endpoint_url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        self._server.stop()

    def env(self) -> dict[str, str]:
        """The environment a process needs to talk to this server through the SDK's own AWS_ENDPOINT_URL."""
        return {**FAKE_AWS_ENV, "AWS_ENDPOINT_URL": self.endpoint_url}
