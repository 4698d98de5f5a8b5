"""The real implementations of the enricher's ports: EventBridge, SNS, Slack, the hourly alert budget in
DynamoDB, the Powertools step ledger and Powertools metrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.idempotency import idempotent_function
from botocore.exceptions import BotoCoreError, ClientError

from comms_bridge.aws.errors import RETRYABLE_CODES, error_code, is_condition_failed
from comms_bridge.aws.eventbridge import EventPublisher, EventTooLargeError, OutgoingEvent
from comms_bridge.enricher.alerts.slack import render_slack_message
from comms_bridge.enricher.alerts.sns import render_sns
from comms_bridge.enricher.alerts.webhook import SlackPostError, SlackWebhook
from comms_bridge.enricher.ports import Alert, AlertFailed, SummaryNotPublished
from comms_bridge.enricher.summary import ERRORS_SUMMARIZED, ErrorsSummary
from comms_bridge.observability import Observability

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig
    from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sns import SNSClient

SNS_TRANSIENT_CODES: Final = RETRYABLE_CODES | {
    "Throttled",
    "Throttling",
    "InternalError",
    "KMSThrottling",
    "RequestTimeout",
}
"""SNS answers worth retrying; any other error code (NotFound, AuthorizationError, InvalidParameter,
KMSDisabled, KMSAccessDenied ...) fails the same way every time: a permanent failure."""


class EventBridgeSummarySink:
    def __init__(self, publisher: EventPublisher) -> None:
        self._publisher = publisher

    def publish(self, summary: ErrorsSummary) -> None:
        event = OutgoingEvent(
            detail_type=ERRORS_SUMMARIZED, detail=summary.detail(), event_key=summary.event_key
        )
        try:
            result = self._publisher.publish([event])
        except EventTooLargeError as exc:
            raise SummaryNotPublished(str(exc)) from None
        if result.failed:
            failed = result.failed[0]
            raise SummaryNotPublished(f"PutEvents failed: {failed.error_code}: {failed.error_message}")


class SnsAlert:
    name = "sns"

    def __init__(self, sns_client: SNSClient, topic_arn: str) -> None:
        self._client = sns_client
        self._topic_arn = topic_arn

    def send(self, alert: Alert) -> None:
        subject, body = render_sns(alert)
        try:
            # The account as a message attribute: a subscription filter policy can route per customer.
            self._client.publish(
                TopicArn=self._topic_arn,
                Subject=subject,
                Message=body,
                MessageAttributes={"accountSid": {"DataType": "String", "StringValue": alert.account_sid}},
            )
        except ClientError as exc:
            code = error_code(exc)
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            transient = code in SNS_TRANSIENT_CODES or status >= 500 or status == 429
            raise AlertFailed(f"SNS Publish failed: {code}", retryable=transient, kind=code) from None
        except BotoCoreError as exc:
            # Connection errors and timeouts (after botocore's own retries).
            raise AlertFailed(
                f"SNS Publish failed: {type(exc).__name__}", retryable=True, kind=type(exc).__name__
            ) from None


class SlackAlert:
    name = "slack"

    def __init__(self, webhook: SlackWebhook) -> None:
        self._webhook = webhook

    def send(self, alert: Alert) -> None:
        try:
            self._webhook.post(render_slack_message(alert))
        except SlackPostError as exc:
            raise AlertFailed(str(exc), retryable=exc.retryable, kind=exc.kind) from None


class DynamoDBAlertBudget:
    """At most ``per_hour`` alerts per operation and clock hour: one counter item per (operation, hour) in
    the idempotency table, incremented only while below the cap (a conditional update, so concurrent
    invocations cannot overshoot). Items expire through the table's TTL attribute an hour after their
    hour ends."""

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        *,
        prefix: str,
        per_hour: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._table = table_name
        self._prefix = prefix
        self.per_hour = per_hour
        self._clock = clock

    def take(self, operation_id: str) -> bool:
        hour = int(self._clock() // 3600)
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"id": {"S": f"{self._prefix}#alert-budget#{operation_id}#{hour}"}},
                UpdateExpression="ADD alerts :one SET expiration = if_not_exists(expiration, :expires)",
                ConditionExpression="attribute_not_exists(alerts) OR alerts < :cap",
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":cap": {"N": str(self.per_hour)},
                    ":expires": {"N": str((hour + 2) * 3600)},
                },
            )
        except ClientError as exc:
            if is_condition_failed(exc):
                return False
            raise
        return True


class PowertoolsLedger:
    """Steps recorded with Powertools ``idempotent_function`` in the idempotency table, one record per
    (step, eventKey). Powertools deletes the record when the step raises, keeps it IN_PROGRESS until the
    Lambda's remaining time ends if the process dies mid-step, and stores the result when it returns."""

    def __init__(
        self, persistence_store: BasePersistenceLayer, config: IdempotencyConfig, *, prefix: str
    ) -> None:
        self._store = persistence_store
        self._config = config
        self._prefix = prefix

    def once(self, step: str, event_key: str, action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        def run(key: dict[str, str]) -> dict[str, Any]:
            return action()

        guarded = idempotent_function(
            run,
            data_keyword_argument="key",
            persistence_store=self._store,
            config=self._config,
            key_prefix=f"{self._prefix}#{step}",
        )
        result: dict[str, Any] = guarded(key={"step": step, "eventKey": event_key})
        return result


class PowertoolsTelemetry:
    """Counts as EMF metrics of the function's namespace and service (``Observability``)."""

    def __init__(self, observability: Observability) -> None:
        self._obs = observability

    def count(self, name: str, value: int = 1, *, target: str | None = None) -> None:
        if target is None:
            self._obs.metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
            return
        # A per-target dimension must not leak onto the function's other metrics: its own EMF blob.
        with single_metric(
            name=name,
            unit=MetricUnit.Count,
            value=value,
            namespace=self._obs.namespace,
            default_dimensions={"service": self._obs.service},
        ) as metric:
            metric.add_dimension(name="target", value=target)
