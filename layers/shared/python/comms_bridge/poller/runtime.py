"""What a poller container keeps between invocations: settings, credentials, HTTP and AWS clients."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from comms_bridge.aws.clients import AwsClients
from comms_bridge.aws.eventbridge import EventPublisher
from comms_bridge.aws.secrets import load_credentials
from comms_bridge.comms.client import CommsClient
from comms_bridge.poller.config import PollerConfig
from comms_bridge.poller.lease import Lease
from comms_bridge.poller.run import LambdaContextLike, MetricsSink, run
from comms_bridge.poller.state_store import StateStore
from comms_bridge.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient


@dataclass
class PollerRuntime:
    settings: Settings
    config: PollerConfig
    comms: CommsClient
    dynamodb: DynamoDBClient
    events: EventBridgeClient

    @classmethod
    def from_env(cls) -> PollerRuntime:
        settings = Settings.from_env()
        settings.require_state_table()  # fail before any credentials are loaded
        credentials = load_credentials(settings)
        config = PollerConfig.from_env(settings, credentials.account_sid)
        aws = AwsClients()
        return cls(
            settings=settings,
            config=config,
            comms=CommsClient(
                settings.comms_api_base_url, credentials, read_timeout=config.read_timeout_seconds
            ),
            dynamodb=aws.dynamodb(),
            events=aws.events(),
        )

    def run(self, context: LambdaContextLike | None, *, metrics: MetricsSink | None = None) -> dict[str, Any]:
        table = self.settings.require_state_table()
        summary = run(
            client=self.comms,
            store=StateStore(self.dynamodb, table_name=table, account_sid=self.config.account_sid),
            lease=Lease(self.dynamodb, table_name=table, account_sid=self.config.account_sid),
            publisher=EventPublisher(
                self.events, bus_name=self.settings.event_bus_name, source=self.settings.event_source
            ),
            config=self.config,
            context=context,
            metrics=metrics,
        )
        return summary.as_dict()
