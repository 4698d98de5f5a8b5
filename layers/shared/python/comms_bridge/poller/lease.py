"""Overlap protection: one conditional PutItem per run, released at the end, lapsing by itself.

The lease is taken with the API's clock (the ``Date`` of the run's first response), so two Lambdas whose
own clocks disagree still agree on when a lease has lapsed. A run never holds it longer than its own
remaining time plus a little, so a crashed run blocks the next one for at most that long.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from comms_bridge.aws.errors import is_condition_failed
from comms_bridge.poller.checkpoint import Checkpoint, checkpoint_from_item
from comms_bridge.poller.state_store import checkpoint_key

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef


class DynamoLease:
    """The lease lives on the account's checkpoint item (``owner`` + ``leaseUntil``), so the checkpoint
    write can be conditional on still holding it without a transaction, and taking the lease returns
    the checkpoint in the same call."""

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
        return checkpoint_key(self.account_sid)

    def acquire(self, now: datetime, seconds: float) -> Checkpoint | None:
        """Take the lease until ``now + seconds`` unless another owner holds an unexpired one (then None);
        return the checkpoint the item holds (an empty one before the first run)."""
        now_epoch = int(now.timestamp())
        until = now_epoch + max(int(seconds), 1)
        try:
            response = self._db.update_item(
                TableName=self.table_name,
                Key=self.key,
                UpdateExpression="SET #owner = :owner, leaseUntil = :until",
                ConditionExpression="attribute_not_exists(#owner) OR leaseUntil < :now OR #owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={
                    ":owner": {"S": self.owner},
                    ":until": {"N": str(until)},
                    ":now": {"N": str(now_epoch)},
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if is_condition_failed(exc):
                return None
            raise
        self.held = True
        return checkpoint_from_item(response.get("Attributes", {})) or Checkpoint()

    def release(self) -> None:
        """Give the lease up if it is still ours; a lease taken over meanwhile is left alone."""
        if not self.held:
            return
        self.held = False
        try:
            self._db.update_item(
                TableName=self.table_name,
                Key=self.key,
                UpdateExpression="REMOVE #owner, leaseUntil",
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":owner": {"S": self.owner}},
            )
        except ClientError as exc:
            if not is_condition_failed(exc):
                raise
