"""Overlap protection: one conditional PutItem per run, released at the end, lapsing by itself.

The lease is taken with the API's clock (the ``Date`` of the run's first response), so two Lambdas whose
own clocks disagree still agree on when a lease has lapsed. A run never holds it longer than its own
remaining time plus a little, so a crashed run blocks the next one for at most that long. No run takes it
with a ``Date`` farther than ``MAX_CLOCK_SKEW_SECONDS`` from its local clock (contract §6), and a lease
reaching further ahead than any run could have taken it (written with such a ``Date`` by an earlier
version) counts as lapsed: it would otherwise block every run until the clock caught up with it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Final

from botocore.exceptions import ClientError

from comms_bridge.aws.errors import is_condition_failed
from comms_bridge.poller.checkpoint import Checkpoint, checkpoint_from_item
from comms_bridge.poller.state_store import checkpoint_key
from comms_bridge.settings import DEFAULT_MAX_CLOCK_SKEW_SECONDS

MAX_LEASE_SECONDS: Final = 3600
"""The longest lease a run takes (``LEASE_SECONDS`` is at most this)."""

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef


def max_lease_ahead(max_clock_skew: float) -> float:
    """How far past a run's clock another run's lease can reach: that run's API clock may be ahead of
    this one's by twice the bound (each is within it of its own, NTP-synchronised, local clock), and no
    lease is taken for longer than ``MAX_LEASE_SECONDS``."""
    return MAX_LEASE_SECONDS + 2 * max_clock_skew


class DynamoLease:
    """The lease lives on the account's checkpoint item (``owner`` + ``leaseUntil``), so the checkpoint
    write can be conditional on still holding it without a transaction, and taking the lease returns
    the checkpoint in the same call."""

    def __init__(
        self,
        dynamodb: DynamoDBClient,
        *,
        table_name: str,
        account_sid: str,
        owner: str | None = None,
        max_clock_skew: float = DEFAULT_MAX_CLOCK_SKEW_SECONDS,
    ) -> None:
        self._db = dynamodb
        self.table_name = table_name
        self.account_sid = account_sid
        self.owner = owner or uuid.uuid4().hex
        self.held = False
        self.max_ahead = max_lease_ahead(max_clock_skew)

    @property
    def key(self) -> dict[str, AttributeValueTypeDef]:
        return checkpoint_key(self.account_sid)

    def acquire(self, now: datetime, seconds: float) -> Checkpoint | None:
        """Take the lease until ``now + seconds`` unless another owner holds an unexpired one (then None);
        return the checkpoint the item holds (an empty one before the first run)."""
        now_epoch = int(now.timestamp())
        until = now_epoch + max(int(min(seconds, MAX_LEASE_SECONDS)), 1)
        try:
            response = self._db.update_item(
                TableName=self.table_name,
                Key=self.key,
                UpdateExpression="SET #owner = :owner, leaseUntil = :until",
                ConditionExpression=(
                    "attribute_not_exists(#owner) OR leaseUntil < :now OR #owner = :owner"
                    " OR leaseUntil > :ceiling"
                ),
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={
                    ":owner": {"S": self.owner},
                    ":until": {"N": str(until)},
                    ":now": {"N": str(now_epoch)},
                    ":ceiling": {"N": str(now_epoch + int(self.max_ahead))},
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if is_condition_failed(exc):
                return None
            raise
        self.held = True
        return checkpoint_from_item(response.get("Attributes", {})) or Checkpoint()

    def released_with_checkpoint(self) -> None:
        self.held = False

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
