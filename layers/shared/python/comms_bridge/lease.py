"""Overlap protection: one conditional PutItem per run, released at the end, lapsing by itself.

The lease is taken with the API's clock (the ``Date`` of the run's first response), so two Lambdas whose
own clocks disagree still agree on when a lease has lapsed. A run never holds it longer than its own
remaining time plus a little, so a crashed run blocks the next one for at most that long.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Final

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

LEASE_CLEANUP_SECONDS: Final = 86_400
"""TTL removes a lapsed lease item a day after it lapsed (it is harmless until then)."""


class Lease:
    def __init__(
        self, dynamodb: DynamoDBClient, *, table_name: str, account_sid: str, owner: str | None = None
    ) -> None:
        self._db = dynamodb
        self.table_name = table_name
        self.account_sid = account_sid
        self.owner = owner or uuid.uuid4().hex
        self.held = False

    @property
    def key(self) -> dict[str, AttributeValueTypeDef]:
        return {"pk": {"S": f"LEASE#{self.account_sid}"}, "sk": {"S": "LEASE"}}

    def acquire(self, now: datetime, seconds: float) -> bool:
        """Take the lease until ``now + seconds`` unless another owner holds an unexpired one."""
        now_epoch = int(now.timestamp())
        until = now_epoch + max(int(seconds), 1)
        try:
            self._db.put_item(
                TableName=self.table_name,
                Item={
                    **self.key,
                    "owner": {"S": self.owner},
                    "leaseUntil": {"N": str(until)},
                    "expiresAt": {"N": str(until + LEASE_CLEANUP_SECONDS)},
                },
                ConditionExpression="attribute_not_exists(pk) OR leaseUntil < :now OR #owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":now": {"N": str(now_epoch)}, ":owner": {"S": self.owner}},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        self.held = True
        return True

    def release(self) -> None:
        """Delete the lease if it is still ours; a lease taken over meanwhile is left alone."""
        if not self.held:
            return
        self.held = False
        try:
            self._db.delete_item(
                TableName=self.table_name,
                Key=self.key,
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":owner": {"S": self.owner}},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
