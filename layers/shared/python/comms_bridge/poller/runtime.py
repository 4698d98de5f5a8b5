"""What a poller container keeps between invocations: configuration, one Comms client per watched account,
AWS clients. Each invocation polls one account: the one its event names (``twilioSecretArn``, what each
account's schedule passes), or the only one the stack watches."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from comms_bridge.accounts import AccountClients
from comms_bridge.aws.clients import AwsClients
from comms_bridge.aws.eventbridge import EventPublisher
from comms_bridge.aws.retry import Backoff, lambda_time_left
from comms_bridge.comms.client import CommsClient
from comms_bridge.comms.credentials import CommsCredentials
from comms_bridge.comms.models import parse_timestamp
from comms_bridge.poller.config import PollerConfig
from comms_bridge.poller.lease import DynamoLease
from comms_bridge.poller.ports import LambdaContextLike, MetricsSink, StateStore
from comms_bridge.poller.run import run
from comms_bridge.poller.state_store import DynamoStateStore
from comms_bridge.poller.summary import RunStatus

logger = logging.getLogger("comms_bridge.poller")

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient


SECRET_ARN_FIELD = "twilioSecretArn"  # noqa: S105 - a field name, not a secret
"""The poller's event field naming the account's secret (each schedule's input)."""


def secret_arn_of(event: object) -> str | None:
    """The ``twilioSecretArn`` of a scheduled event; None when absent (a manual or older invocation)."""
    value = event.get(SECRET_ARN_FIELD) if isinstance(event, dict) else None
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{SECRET_ARN_FIELD} must be a string")
    return value or None


@dataclass
class PollerRuntime:
    config: PollerConfig
    accounts: AccountClients
    dynamodb: DynamoDBClient
    events: EventBridgeClient

    @classmethod
    def from_env(cls) -> PollerRuntime:
        config = PollerConfig.from_env()
        config.require_state_table()  # fail before any credentials are loaded
        aws = AwsClients()

        def build(
            credentials: CommsCredentials, refresh: Callable[[], CommsCredentials] | None
        ) -> CommsClient:
            return CommsClient(
                config.comms_api_base_url,
                credentials,
                read_timeout=config.read_timeout_seconds,
                max_clock_skew=config.max_clock_skew_seconds,
                max_response_bytes=config.comms_max_response_bytes,
                refresh_credentials=refresh,
            )

        return cls(
            config=config,
            accounts=AccountClients(config, build),
            dynamodb=aws.dynamodb(),
            events=aws.events(),
        )

    def comms(self, secret_arn: str | None = None) -> CommsClient:
        """The client of the account ``secret_arn`` holds (the only watched one when None); refuses a
        secret the stack does not watch (:class:`~comms_bridge.accounts.UnwatchedSecret`)."""
        return self.accounts.for_secret(secret_arn)

    @property
    def account_sid(self) -> str:
        """The only watched account (the CLI's single-account commands); several: name one with comms()."""
        return self.comms().account_sid

    def run(
        self,
        context: LambdaContextLike | None,
        *,
        metrics: MetricsSink | None = None,
        secret_arn: str | None = None,
    ) -> dict[str, Any]:
        """One run for one account; its lease, checkpoint and state are that account's items."""
        config = self.config
        table = config.require_state_table()
        comms = self.comms(secret_arn)
        # Our own DynamoDB and EventBridge retries stop at this invocation's end (the Comms client's stop at
        # the run's budget, PollerRun gives it its deadline).
        time_left = lambda_time_left(context)
        store = DynamoStateStore(
            self.dynamodb,
            table_name=table,
            account_sid=comms.account_sid,
            retry=Backoff().with_deadline(time_left),
        )
        try:
            summary = run(
                source=comms,
                store=store,
                lease=DynamoLease(
                    self.dynamodb,
                    table_name=table,
                    account_sid=comms.account_sid,
                    max_clock_skew=config.max_clock_skew_seconds,
                ),
                sink=EventPublisher(
                    self.events, bus_name=config.event_bus_name, source=config.event_source
                ).with_deadline(time_left),
                config=config,
                context=context,
                metrics=metrics,
            )
        except Exception as exc:
            # Per account on the dashboard: a raised run logs no summary of its own.
            logger.error(
                "poller run failed",
                extra={
                    "accountSid": comms.account_sid,
                    "summary": {"status": "failed"},
                    "error": type(exc).__name__,
                },
            )
            report_stored_lag(store, comms, metrics)
            raise
        if summary.checkpoint_lag_seconds is None and summary.status is RunStatus.FAILED:
            report_stored_lag(store, comms, metrics)
        # The run summary log's accountSid: what the dashboard's per-account widgets group by.
        return {"accountSid": comms.account_sid, **summary.as_dict()}


def report_stored_lag(store: StateStore, comms: CommsClient, metrics: MetricsSink | None) -> None:
    """A run that failed before its checkpoint (a 401, a 429 storm) still reports the account's lag, from
    the stored checkpoint: with several accounts the others keep CheckpointLagSeconds alive, so only this
    keeps the lag alarm (on the worst account) seeing a stuck one."""
    if metrics is None:
        return
    try:
        checkpoint = store.load_checkpoint()
    except Exception:  # never mask the run's own outcome
        logger.warning("could not read the checkpoint to report the lag", exc_info=True)
        return
    if checkpoint is None or checkpoint.seen_through is None:
        return
    lag = (comms.now() - parse_timestamp(checkpoint.seen_through)).total_seconds()
    metrics.add("CheckpointLagSeconds", "Seconds", lag)
