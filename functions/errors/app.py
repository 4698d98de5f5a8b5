"""Errors enricher Lambda: target of ErrorsTriggerRule (contract §1, §3, §4).

Thin wiring only: parse the trigger (Powertools Parser), then run ``comms_bridge.enricher.enricher.Enricher``
under Powertools Idempotency keyed on the trigger's ``detail.eventKey``. Clients, settings and the idempotency
layers are built once per execution environment; whatever depends on the invocation (its deadline) is
built per invocation.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Final

import boto3
import requests
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from comms_bridge.aws.eventbridge import EventPublisher
from comms_bridge.aws.secrets import load_credentials
from comms_bridge.comms.client import CommsClient
from comms_bridge.enricher.adapters import EventBridgeSummarySink, PowertoolsLedger, SlackAlert, SnsAlert
from comms_bridge.enricher.alerts.webhook import SecretWebhookUrl, SlackWebhook
from comms_bridge.enricher.enricher import Enricher
from comms_bridge.enricher.ports import AlertTarget
from comms_bridge.enricher.settings import EnricherSettings
from comms_bridge.enricher.trigger import InvalidTriggerEvent, TriggerEvent, parse_trigger
from comms_bridge.observability import quiet_secret_leaking_loggers
from comms_bridge.settings import Settings

NAMESPACE: Final = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "CommsBridge")
SERVICE: Final = os.environ.get("POWERTOOLS_SERVICE_NAME", "errors")
SLACK_MARGIN_SECONDS: Final = 1.0
"""Slack waits (Retry-After) and timeouts end this long before Lambda would kill the invocation."""

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)
copy_config_to_registered_loggers(source_logger=logger, include={"comms_bridge"})
quiet_secret_leaking_loggers()

_AWS_CONFIG: Final = Config(
    retries={"mode": "standard", "max_attempts": 3}, connect_timeout=3, read_timeout=10
)


class PowertoolsTelemetry:
    def count(self, name: str, value: int = 1, *, target: str | None = None) -> None:
        if target is None:
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
            return
        # A per-target dimension must not leak onto the function's other metrics: its own EMF blob.
        with single_metric(
            name=name,
            unit=MetricUnit.Count,
            value=value,
            namespace=NAMESPACE,
            default_dimensions={"service": SERVICE},
        ) as metric:
            metric.add_dimension(name="target", value=target)


class Runtime:
    """What one execution environment keeps between invocations."""

    def __init__(self) -> None:
        self.settings = Settings.from_env()
        self.options = EnricherSettings.from_env()
        table = self.options.idempotency_table_name
        ttl = self.options.idempotency_ttl_seconds
        self.handler_config = IdempotencyConfig(
            event_key_jmespath="detail.eventKey", expires_after_seconds=ttl
        )
        self.step_config = IdempotencyConfig(expires_after_seconds=ttl)
        dynamodb = boto3.client("dynamodb", config=_AWS_CONFIG)
        # Two layers: Powertools configures a layer once, with one config (jmespath) for its lifetime.
        handler_store = DynamoDBPersistenceLayer(table_name=table, boto3_client=dynamodb)
        self.step_store = DynamoDBPersistenceLayer(table_name=table, boto3_client=dynamodb)
        self.publisher = EventPublisher(
            boto3.client("events", config=_AWS_CONFIG),
            bus_name=self.settings.event_bus_name,
            source=self.settings.event_source,
        )
        self.sns = boto3.client("sns", config=_AWS_CONFIG) if self.settings.alert_topic_arn else None
        self.secrets = SecretsProvider(boto3_client=boto3.client("secretsmanager", config=_AWS_CONFIG))
        self._ran = False
        self.comms_session = requests.Session()
        self.slack_session = requests.Session()
        # Record ids must not depend on the module's import name: the function name is stable.
        self.key_prefix = f"{os.environ.get('AWS_LAMBDA_FUNCTION_NAME', 'comms-bridge-errors')}#errors"
        self.process = idempotent_function(
            self._process,
            data_keyword_argument="event",
            persistence_store=handler_store,
            config=self.handler_config,
            key_prefix=f"{self.key_prefix}#trigger",
        )

    def handle(self, event: dict[str, Any], trigger: TriggerEvent, context: LambdaContext) -> dict[str, Any]:
        self.handler_config.register_lambda_context(context)
        self.step_config.register_lambda_context(context)
        self._ran = False
        result: dict[str, Any] = self.process(event=event, trigger=trigger, context=context)
        if not self._ran:
            # Powertools answered from the idempotency record: a duplicate event or a retry after success.
            metrics.add_metric(name="DuplicateTriggers", unit=MetricUnit.Count, value=1)
            logger.info("duplicate trigger: returning the stored result, nothing sent again")
        return result

    def _process(
        self, event: dict[str, Any], trigger: TriggerEvent, context: LambdaContext
    ) -> dict[str, Any]:
        self._ran = True

        def seconds_left() -> float:
            return context.get_remaining_time_in_millis() / 1000.0

        def reading_time_left() -> float:
            return seconds_left() - self.options.errors_safety_margin_seconds

        comms = CommsClient(
            self.settings.comms_api_base_url,
            load_credentials(self.settings, self.secrets),
            session=self.comms_session,
            deadline=reading_time_left,
        )
        enricher = Enricher(
            errors=comms,
            sink=EventBridgeSummarySink(self.publisher),
            targets=self._targets(lambda: seconds_left() - SLACK_MARGIN_SECONDS),
            ledger=PowertoolsLedger(self.step_store, self.step_config, prefix=self.key_prefix),
            telemetry=PowertoolsTelemetry(),
            max_errors=self.options.max_errors,
            page_size=self.options.errors_page_size,
            time_left=reading_time_left,
        )
        return enricher.run(trigger)

    def _targets(self, slack_time_left: Callable[[], float]) -> list[AlertTarget]:
        targets: list[AlertTarget] = []
        if self.sns is not None and self.settings.alert_topic_arn:
            targets.append(SnsAlert(self.sns, self.settings.alert_topic_arn))
        if self.settings.slack_webhook_secret_arn:
            webhook = SlackWebhook(
                SecretWebhookUrl(self.settings.slack_webhook_secret_arn, self.secrets),
                session=self.slack_session,
                timeout=self.options.slack_timeout_seconds,
                time_left=slack_time_left,
            )
            targets.append(SlackAlert(webhook))
        return targets


_runtime: Runtime | None = None


def _get_runtime() -> Runtime:
    global _runtime  # noqa: PLW0603 - one Runtime per execution environment, built on first use
    if _runtime is None:
        _runtime = Runtime()
    return _runtime


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    runtime = _get_runtime()
    try:
        trigger = parse_trigger(event, expected_source=runtime.settings.event_source)
    except InvalidTriggerEvent as exc:
        # Raised on purpose: no alert, and Lambda sends the event to the on-failure destination.
        metrics.add_metric(name="InvalidTriggerEvents", unit=MetricUnit.Count, value=1)
        logger.error("trigger event rejected", extra={"reason": str(exc)})
        raise
    logger.append_keys(operationId=trigger.detail.operation_id, triggerEventKey=trigger.detail.event_key)
    return runtime.handle(event, trigger, context)
