"""What a poller container keeps between invocations: configuration, credentials, HTTP and AWS clients."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from comms_bridge.aws.clients import AwsClients
from comms_bridge.aws.eventbridge import EventPublisher
from comms_bridge.aws.secrets import load_credentials
from comms_bridge.comms.client import CommsClient
from comms_bridge.poller.config import PollerConfig
from comms_bridge.poller.lease import DynamoLease
from comms_bridge.poller.ports import LambdaContextLike, MetricsSink
from comms_bridge.poller.run import run
from comms_bridge.poller.state_store import DynamoStateStore

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient


@dataclass
class PollerRuntime:
    config: PollerConfig
    comms: CommsClient
    dynamodb: DynamoDBClient
    events: EventBridgeClient

    @classmethod
    def from_env(cls) -> PollerRuntime:
        config = PollerConfig.from_env()
        config.require_state_table()  # fail before any credentials are loaded
        credentials = load_credentials(config)
        aws = AwsClients()
        return cls(
            config=config,
            comms=CommsClient(
                config.comms_api_base_url, credentials, read_timeout=config.read_timeout_seconds
            ),
            dynamodb=aws.dynamodb(),
            events=aws.events(),
        )

    @property
    def account_sid(self) -> str:
        """The account the credentials belong to: the one polled, and the one every state item is keyed by."""
        return self.comms.account_sid

    def run(self, context: LambdaContextLike | None, *, metrics: MetricsSink | None = None) -> dict[str, Any]:
        config = self.config
        table = config.require_state_table()
        summary = run(
            source=self.comms,
            store=DynamoStateStore(self.dynamodb, table_name=table, account_sid=self.account_sid),
            lease=DynamoLease(self.dynamodb, table_name=table, account_sid=self.account_sid),
            sink=EventPublisher(self.events, bus_name=config.event_bus_name, source=config.event_source),
            config=config,
            context=context,
            metrics=metrics,
        )
        return summary.as_dict()
