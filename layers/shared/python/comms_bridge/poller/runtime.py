"""What a poller container keeps between invocations: configuration, credentials, HTTP and AWS clients."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from comms_bridge.aws.clients import AwsClients
from comms_bridge.aws.eventbridge import EventPublisher
from comms_bridge.aws.retry import Backoff, lambda_time_left
from comms_bridge.aws.secrets import credentials_refresher, load_credentials
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
                config.comms_api_base_url,
                credentials,
                read_timeout=config.read_timeout_seconds,
                max_clock_skew=config.max_clock_skew_seconds,
                max_response_bytes=config.comms_max_response_bytes,
                refresh_credentials=credentials_refresher(config),
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
        # Our own DynamoDB and EventBridge retries stop at this invocation's end (the Comms client's stop at
        # the run's budget, PollerRun gives it its deadline).
        time_left = lambda_time_left(context)
        summary = run(
            source=self.comms,
            store=DynamoStateStore(
                self.dynamodb,
                table_name=table,
                account_sid=self.account_sid,
                retry=Backoff().with_deadline(time_left),
            ),
            lease=DynamoLease(
                self.dynamodb,
                table_name=table,
                account_sid=self.account_sid,
                max_clock_skew=config.max_clock_skew_seconds,
            ),
            sink=EventPublisher(
                self.events, bus_name=config.event_bus_name, source=config.event_source
            ).with_deadline(time_left),
            config=config,
            context=context,
            metrics=metrics,
        )
        return summary.as_dict()
