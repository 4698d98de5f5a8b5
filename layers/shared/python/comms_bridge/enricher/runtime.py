"""What an errors-function container keeps between invocations, and how one invocation is wired.

Built once per container by :meth:`EnricherRuntime.from_env`: settings, AWS clients, the two idempotency
persistence layers, the Comms and Slack HTTP sessions. Whatever depends on the invocation (its deadline)
is built per invocation.

Exactly-once per triggering ``eventKey`` (contract §4) rests on two kinds of Powertools idempotency record
in one table: one per trigger around the whole run, so that a duplicate event (or a retry after success)
gets the stored result, and one per step (``PowertoolsLedger``), so that a retry after a partial failure
runs only the steps that failed. The same table holds the hourly alert budget's counters.

An invocation is either one EventBridge event (a rule targeting the function, a test) or an SQS batch of
them (contract §6: the errors queue between the rules and the function bounds its concurrency). A batch
is processed with Powertools Batch: a record that must be retried is reported in ``batchItemFailures``
and the queue delivers it again (after its retries, the queue's dead-letter queue has it); the others
are done.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

import requests
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.parameters import SecretsProvider

from comms_bridge.accounts import AccountClients
from comms_bridge.aws.clients import AwsClients
from comms_bridge.aws.eventbridge import EventPublisher
from comms_bridge.aws.secrets import SecretsProviderLike
from comms_bridge.comms.client import CommsClient
from comms_bridge.comms.credentials import CommsCredentials
from comms_bridge.enricher.adapters import (
    DynamoDBAlertBudget,
    EventBridgeSummarySink,
    PowertoolsLedger,
    SlackAlert,
    SnsAlert,
)
from comms_bridge.enricher.alerts.webhook import SecretWebhookUrl, SlackWebhook
from comms_bridge.enricher.confirmation import Thresholds, TriggerNotConfirmed
from comms_bridge.enricher.enricher import AlertPolicy, Enricher
from comms_bridge.enricher.ports import AlertBudget, AlertTarget, CommsSource, SummarySink, Telemetry
from comms_bridge.enricher.settings import EnricherSettings
from comms_bridge.enricher.trigger import (
    InvalidTriggerEvent,
    TriggerEvent,
    parse_trigger,
    trigger_from_queue_body,
)
from comms_bridge.settings import Settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
    from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sns import SNSClient

logger = logging.getLogger(__name__)

SLACK_MARGIN_SECONDS: Final = 1.0
"""Slack waits (Retry-After) and timeouts end this long before Lambda would kill the invocation."""

DEFAULT_FUNCTION_NAME: Final = "comms-bridge-errors"
"""Names the idempotency records when ``AWS_LAMBDA_FUNCTION_NAME`` is unset (local runs)."""

MIN_RECORD_SECONDS: Final = 15.0
"""A queue record is started only with at least this much time left beyond the reading margin; otherwise it
is reported failed untouched and the queue delivers it again (only a batch of several can run short)."""

Refresh = Callable[[], CommsCredentials]

Tag = Callable[[TriggerEvent], None]
"""Called with each trigger before it runs: the handler puts its ids on the log lines."""


class NotEnoughTime(Exception):
    """The invocation is too close to its end to start this record; the queue delivers it again."""


class EnricherPorts(Protocol):
    """Builds the enricher's ports for one invocation, from what the container keeps."""

    def errors_source(self, time_left: Callable[[], float], account_sid: str) -> CommsSource: ...

    def summary_sink(self, time_left: Callable[[], float]) -> SummarySink: ...

    def alert_targets(self, time_left: Callable[[], float], account_sid: str) -> list[AlertTarget]: ...

    def alert_budget(self, prefix: str) -> AlertBudget: ...


@dataclass
class AwsPorts:
    """The real ports: the Comms API (one client per watched account), EventBridge, SNS and the Slack
    webhooks (per account when mapped)."""

    settings: Settings
    options: EnricherSettings
    publisher: EventPublisher
    sns: SNSClient | None
    secrets: SecretsProviderLike
    dynamodb: DynamoDBClient | None = None
    slack_session: requests.Session = field(default_factory=requests.Session)
    accounts: AccountClients | None = None

    def __post_init__(self) -> None:
        if self.accounts is None:
            settings = self.settings

            def build(credentials: CommsCredentials, refresh: Refresh | None) -> CommsClient:
                return CommsClient(
                    settings.comms_api_base_url,
                    credentials,
                    max_clock_skew=settings.max_clock_skew_seconds,
                    max_response_bytes=settings.comms_max_response_bytes,
                    refresh_credentials=refresh,
                )

            self.accounts = AccountClients(settings, build, secrets_provider=self.secrets)

    @classmethod
    def from_settings(cls, settings: Settings, options: EnricherSettings, aws: AwsClients) -> AwsPorts:
        return cls(
            settings=settings,
            options=options,
            publisher=EventPublisher(
                aws.events(), bus_name=settings.event_bus_name, source=settings.event_source
            ),
            sns=aws.sns() if settings.alert_topic_arn else None,
            secrets=SecretsProvider(boto3_client=aws.secretsmanager()),
            dynamodb=aws.dynamodb(),
        )

    def errors_source(self, time_left: Callable[[], float], account_sid: str) -> CommsSource:
        """The trigger's account's client, with this invocation's deadline. For an account the stack does
        not watch, another account's: the enricher then refuses the trigger before any request
        (``foreign_account``, contract §6), as it always has for a trigger about another account."""
        assert self.accounts is not None
        client = self.accounts.for_account(account_sid)
        if client is None:
            watched = self.accounts.watched
            client = self.accounts.for_secret(watched[0] if watched else None)
        return client.with_deadline(time_left)

    def summary_sink(self, time_left: Callable[[], float]) -> SummarySink:
        # EventBridge retries stop at this invocation's end (contract §6).
        return EventBridgeSummarySink(self.publisher.with_deadline(time_left))

    def alert_targets(self, time_left: Callable[[], float], account_sid: str) -> list[AlertTarget]:
        """SNS then Slack, each only when configured (contract §2: either may be unset); Slack through the
        account's webhook (``SLACK_WEBHOOK_SECRET_ARNS_BY_ACCOUNT``), else the default one."""
        targets: list[AlertTarget] = []
        if self.sns is not None and self.settings.alert_topic_arn:
            targets.append(SnsAlert(self.sns, self.settings.alert_topic_arn))
        slack_secret = self.slack_secret_for(account_sid)
        if slack_secret:
            webhook = SlackWebhook(
                SecretWebhookUrl(slack_secret, self.secrets),
                session=self.slack_session,
                timeout=self.options.slack_timeout_seconds,
                time_left=time_left,
            )
            targets.append(SlackAlert(webhook))
        return targets

    def slack_secret_for(self, account_sid: str) -> str | None:
        """The account's Slack webhook secret (``SLACK_WEBHOOK_SECRET_ARNS_BY_ACCOUNT``), else the default."""
        mapped = self.options.slack_webhooks_by_account.get(account_sid)
        return mapped or self.settings.slack_webhook_secret_arn or None

    def alert_budget(self, prefix: str) -> AlertBudget:
        if self.dynamodb is None:
            raise RuntimeError("AwsPorts without a DynamoDB client has no alert budget")
        return DynamoDBAlertBudget(
            self.dynamodb,
            self.options.idempotency_table_name,
            prefix=prefix,
            per_hour=self.options.max_alerts_per_operation_per_hour,
        )


class EnricherRuntime:
    """One per container. :meth:`handle_invocation` takes what Lambda passes (one EventBridge event or an
    SQS batch of them); :meth:`parse` checks one event, :meth:`handle` runs it."""

    def __init__(
        self,
        *,
        ports: EnricherPorts,
        options: EnricherSettings,
        event_source: str,
        telemetry: Telemetry,
        trigger_store: BasePersistenceLayer,
        step_store: BasePersistenceLayer,
        function_name: str,
        stall_after_seconds: int = 1800,
    ) -> None:
        self.ports = ports
        self.options = options
        self.event_source = event_source
        self.policy = AlertPolicy(
            thresholds=Thresholds(
                failed_count=options.failed_count_threshold, failed_rate=options.failed_rate_threshold
            ),
            stall_after_seconds=stall_after_seconds,
        )
        self.telemetry = telemetry
        self.step_store = step_store
        ttl = options.idempotency_ttl_seconds
        # The hook sits on the trigger's config only: a step answered from its record is what a retry
        # after a partial failure is meant to do, not a duplicate.
        self.trigger_config = IdempotencyConfig(
            event_key_jmespath="detail.eventKey", expires_after_seconds=ttl, response_hook=self._replayed
        )
        self.step_config = IdempotencyConfig(expires_after_seconds=ttl)
        # Record ids must not depend on the module's import name: the function name is stable.
        self.key_prefix = f"{function_name}#errors"
        self._run_once = idempotent_function(
            self._run,
            data_keyword_argument="event",
            persistence_store=trigger_store,
            config=self.trigger_config,
            key_prefix=f"{self.key_prefix}#trigger",
        )

    @classmethod
    def from_env(
        cls,
        telemetry: Telemetry,
        *,
        environ: Mapping[str, str] | None = None,
        aws: AwsClients | None = None,
    ) -> EnricherRuntime:
        env = os.environ if environ is None else environ
        settings = Settings.from_env(env)
        options = EnricherSettings.from_env(env)
        ports = AwsPorts.from_settings(settings, options, aws or AwsClients())
        dynamodb = ports.dynamodb  # one client for the alert budget and both idempotency layers
        table = options.idempotency_table_name
        return cls(
            ports=ports,
            options=options,
            event_source=settings.event_source,
            telemetry=telemetry,
            # Two layers: Powertools configures a layer once, with one config (jmespath) for its lifetime.
            trigger_store=DynamoDBPersistenceLayer(table_name=table, boto3_client=dynamodb),
            step_store=DynamoDBPersistenceLayer(table_name=table, boto3_client=dynamodb),
            function_name=env.get("AWS_LAMBDA_FUNCTION_NAME") or DEFAULT_FUNCTION_NAME,
            stall_after_seconds=settings.stall_after_seconds,
        )

    def handle_invocation(
        self, event: dict[str, Any], context: LambdaContext, tag: Tag | None = None
    ) -> dict[str, Any]:
        """One EventBridge event (errors raise: Lambda retries it) or an SQS batch (a record that must be
        retried is reported in ``batchItemFailures``)."""
        if not _is_sqs_batch(event):
            trigger = self.parse(event)
            if tag is not None:
                tag(trigger)
            return self.handle(event, trigger, context)

        def record_handler(record: SQSRecord) -> dict[str, Any]:
            left = context.get_remaining_time_in_millis() / 1000.0
            if left < self.options.errors_safety_margin_seconds + MIN_RECORD_SECONDS:
                raise NotEnoughTime(f"{left:.0f} s left: the queue delivers the record again")
            body = trigger_from_queue_body(record.body)
            trigger = self.parse(body)
            if tag is not None:
                tag(trigger)
            return self.handle(dict(body) if isinstance(body, dict) else {}, trigger, context)

        processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
        response = process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
        return dict(response)

    def parse(self, event: object) -> TriggerEvent:
        try:
            return parse_trigger(event, expected_source=self.event_source)
        except InvalidTriggerEvent as exc:
            # Raised on purpose: no alert, and Lambda sends the event to the on-failure destination.
            self.telemetry.count("InvalidTriggerEvents")
            logger.error("trigger event rejected", extra={"reason": str(exc)})
            raise

    def handle(self, event: dict[str, Any], trigger: TriggerEvent, context: LambdaContext) -> dict[str, Any]:
        """Run the enricher once per ``detail.eventKey``; a replay returns the stored result."""
        self.trigger_config.register_lambda_context(context)
        self.step_config.register_lambda_context(context)
        try:
            result: dict[str, Any] = self._run_once(event=event, trigger=trigger, context=context)
        except TriggerNotConfirmed as exc:
            # Outside the trigger's record on purpose: nothing is stored under a forged event's eventKey.
            return {
                "triggerEventKey": trigger.detail.event_key,
                "operationId": trigger.detail.operation_id,
                "confirmed": False,
                "reason": exc.reason.value,
            }
        return result

    def enricher(self, context: LambdaContext, account_sid: str) -> Enricher:
        """The enricher for a trigger about ``account_sid``: that account's client and alert targets."""

        def seconds_left() -> float:
            return context.get_remaining_time_in_millis() / 1000.0

        def reading_time_left() -> float:
            return seconds_left() - self.options.errors_safety_margin_seconds

        comms = self.ports.errors_source(reading_time_left, account_sid)
        return Enricher(
            comms=comms,
            errors=comms,
            sink=self.ports.summary_sink(seconds_left),
            targets=self.ports.alert_targets(lambda: seconds_left() - SLACK_MARGIN_SECONDS, account_sid),
            budget=self.ports.alert_budget(self.key_prefix),
            ledger=PowertoolsLedger(self.step_store, self.step_config, prefix=self.key_prefix),
            telemetry=self.telemetry,
            policy=self.policy,
            event_source=self.event_source,
            max_errors=self.options.max_errors,
            page_size=self.options.errors_page_size,
            time_left=reading_time_left,
        )

    def _run(self, event: dict[str, Any], trigger: TriggerEvent, context: LambdaContext) -> dict[str, Any]:
        # ``event`` is unused here: Powertools hashes it (its detail.eventKey) for the trigger's record.
        return self.enricher(context, trigger.detail.account_sid).run(trigger)

    def _replayed(self, response: Any, idempotent_data: DataRecord) -> Any:
        # Powertools calls the hook only when it answers from a completed record instead of running
        # ``_run``: a duplicate event, or Lambda retrying an invocation that had succeeded.
        self.telemetry.count("DuplicateTriggers")
        logger.info("duplicate trigger: returning the stored result, nothing sent again")
        return response


def _is_sqs_batch(event: object) -> bool:
    records = event.get("Records") if isinstance(event, dict) else None
    return (
        isinstance(records, list)
        and bool(records)
        and all(isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records)
    )
