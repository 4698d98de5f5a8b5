"""What the stream consumer remembers besides operation state, in the poller's state table:

=============================  ==================  ==========================================================
pk                             sk                  item
=============================  ==================  ==========================================================
``STREAM#<account>``           ``TEST_EVENT``      the latest sink test event: ``testId``, when it arrived
``STREAM#<account>``           ``TYPE#<type>``     per event type: last arrival, its event time and operation,
                                                   a running count (what ``comms-bridge stream status`` shows)
=============================  ==================  ==========================================================

The test id is no secret (Twilio shows it to whoever can read the stream) but it is only useful for a
short while: a second Test call invalidates it. Items expire after a week.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import ClientError

from comms_bridge.aws.errors import error_code
from comms_bridge.poller.exceptions import StateStoreError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

EXPIRES_AFTER_SECONDS: Final = 7 * 86_400
TEST_EVENT_SK: Final = "TEST_EVENT"
TYPE_SK_PREFIX: Final = "TYPE#"


@dataclass(frozen=True)
class TestEventRecord:
    test_id: str
    received_at: str
    sequence: str


@dataclass(frozen=True)
class TypeSeen:
    """Records of one event type in one batch: how many, and the latest one's event time and operation."""

    type: str
    count: int
    received_at: str
    last_event_time: str | None
    last_operation_id: str | None


class DynamoStreamLedger:
    def __init__(self, dynamodb: DynamoDBClient, *, table_name: str, account_sid: str) -> None:
        self._db = dynamodb
        self.table_name = table_name
        self.account_sid = account_sid

    @property
    def _pk(self) -> str:
        return f"STREAM#{self.account_sid}"

    def _key(self, sk: str) -> dict[str, Any]:
        return {"pk": {"S": self._pk}, "sk": {"S": sk}}

    def record_test_event(self, event: TestEventRecord, *, expires_at: int) -> None:
        item = {
            **self._key(TEST_EVENT_SK),
            "testId": {"S": event.test_id},
            "receivedAt": {"S": event.received_at},
            "sequence": {"S": event.sequence},
            "expiresAt": {"N": str(expires_at)},
        }
        self._call("PutItem", lambda: self._db.put_item(TableName=self.table_name, Item=item))

    def record_types(self, seen: Mapping[str, TypeSeen], *, expires_at: int) -> None:
        for entry in seen.values():
            values: dict[str, Any] = {
                ":n": {"N": str(entry.count)},
                ":at": {"S": entry.received_at},
                ":exp": {"N": str(expires_at)},
                ":type": {"S": entry.type},
                ":time": {"S": entry.last_event_time or ""},
                ":op": {"S": entry.last_operation_id or ""},
            }
            self._call(
                "UpdateItem",
                lambda values=values, entry=entry: self._db.update_item(
                    TableName=self.table_name,
                    Key=self._key(TYPE_SK_PREFIX + entry.type),
                    UpdateExpression=(
                        "ADD eventCount :n SET receivedAt = :at, expiresAt = :exp, eventType = :type, "
                        "lastEventTime = :time, lastOperationId = :op"
                    ),
                    ExpressionAttributeValues=values,
                ),
            )

    def latest_test_event(self) -> TestEventRecord | None:
        response = self._call(
            "GetItem",
            lambda: self._db.get_item(
                TableName=self.table_name, Key=self._key(TEST_EVENT_SK), ConsistentRead=True
            ),
        )
        item = response.get("Item")
        if not item:
            return None
        return TestEventRecord(item["testId"]["S"], item["receivedAt"]["S"], item["sequence"]["S"])

    def types_seen(self) -> list[TypeSeen]:
        response = self._call(
            "Query",
            lambda: self._db.query(
                TableName=self.table_name,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
                ExpressionAttributeValues={
                    ":pk": {"S": self._pk},
                    ":prefix": {"S": TYPE_SK_PREFIX},
                },
            ),
        )
        return [
            TypeSeen(
                type=item["eventType"]["S"],
                count=int(item["eventCount"]["N"]),
                received_at=item["receivedAt"]["S"],
                last_event_time=item["lastEventTime"]["S"] or None,
                last_operation_id=item["lastOperationId"]["S"] or None,
            )
            for item in response.get("Items", [])
        ]

    def _call(self, what: str, call: Any) -> Any:
        try:
            return call()
        except ClientError as exc:
            raise StateStoreError(f"stream ledger {what} failed: {error_code(exc)}") from None
