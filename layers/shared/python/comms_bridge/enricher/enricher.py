"""The alerter: confirm the trigger against the Comms API, then for a failure read the operation's errors,
summarize them, publish the summary and alert; for a stall, alert.

The orchestration takes all its I/O as small objects (the Comms API, errors source, summary sink, alert
targets, an hourly alert budget, a step ledger, telemetry) so unit tests drive it with fakes and the
Lambda handler only wires real ones.

Trust (contract §6): nothing is read, published or alerted for a trigger the API does not confirm
(:mod:`comms_bridge.enricher.confirmation`); such a trigger raises :class:`TriggerNotConfirmed`, is
counted (``UnconfirmedTriggers``) and logged, and leaves no record behind, so a forged event can never
occupy the ``eventKey`` of a real one. A confirmed trigger then takes one alert from the operation's hourly
budget (``MAX_ALERTS_PER_OPERATION_PER_HOUR``); over it, nothing is published or alerted
(``AlertsCapped``).

Exactly-once per triggering ``eventKey`` (contract §4) rests on the step ledger: each step -- confirm,
take from the budget, build the summary, publish it, alert SNS, alert Slack -- runs at most once to
completion per key, and its result is stored. A retry after a partial failure replays the finished steps
from the ledger (the same confirmation and summary, no second post) and runs only the ones that failed.

Failure policy (docs/enricher.md):

- Comms API 404 on the errors list: a summary with ``errorCount`` 0; ``truncated`` is true when the API
  counts failures (errors existed that could not be read); alerts say the details are gone.
- Any other Comms failure of the errors list after the client's own retries: the summary is published
  with what was read, ``truncated`` true, and the alerts say the list is incomplete. The alert about a bad
  send is worth more on time than complete later.
- Publishing the summary fails, or an alert fails transiently (timeout, connection error, 5xx, 429): the
  other steps still run, then the invocation (or the queue record) fails so that the retry runs only
  those steps, until each target has the alert once.
- An alert refused for good (a revoked webhook, another 4xx) is recorded as failed, logged and counted
  (``PermanentAlertFailures``, which has an alarm), and not retried.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

from comms_bridge.comms.exceptions import CommsApiError, CommsNotFound
from comms_bridge.enricher.confirmation import (
    ConfirmedOperation,
    Thresholds,
    TriggerNotConfirmed,
    check_account,
    confirm,
)
from comms_bridge.enricher.grouping import MAX_GROUPS, ErrorTally
from comms_bridge.enricher.ports import (
    Alert,
    AlertBudget,
    AlertFailed,
    AlertTarget,
    ErrorsSource,
    OperationSource,
    StepLedger,
    SummaryNotPublished,
    SummarySink,
    Telemetry,
)
from comms_bridge.enricher.settings import DEFAULT_MAX_ERRORS, DEFAULT_PAGE_SIZE
from comms_bridge.enricher.stall import StallAlert
from comms_bridge.enricher.summary import ErrorsSummary, fit_summary
from comms_bridge.enricher.trigger import TriggerEvent

logger = logging.getLogger("comms_bridge.enricher.enricher")


STEP_CONFIRM: Final = "confirm"
STEP_BUDGET: Final = "budget"
STEP_SUMMARY: Final = "summary"
STEP_PUBLISH: Final = "publish"
DEFAULT_EVENT_SOURCE: Final = "twilio.comms"

OUTCOME_SENT: Final = "sent"
OUTCOME_FAILED: Final = "failed"


class EnrichmentIncomplete(Exception):
    """Some steps must be retried; the finished ones are recorded and will not run again."""


# -- reading ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorsRead:
    tally: ErrorTally
    truncated: bool
    note: str | None
    pages: int
    skipped: int
    failure: str | None


def read_errors(
    source: ErrorsSource,
    operation_id: str,
    *,
    failed_count: int,
    max_errors: int,
    page_size: int = DEFAULT_PAGE_SIZE,
    time_left: Callable[[], float],
) -> ErrorsRead:
    """Read pages until the list ends, ``max_errors`` were read or ``time_left()`` reaches 0 (it is the
    time left *for reading*: the caller's safety margin is already taken off)."""
    tally = ErrorTally()
    pages = skipped = 0
    out_of_time = False
    failure: str | None = None
    note: str | None = None
    listing = source.list_operation_errors(operation_id, max_items=max_errors, page_size=page_size)
    try:
        for page in listing:
            pages += 1
            tally.extend(page.errors)
            skipped += len(page.skipped)
            if page.next_token and not listing.truncated and time_left() <= 0:
                out_of_time = True
                break
    except CommsNotFound:
        failure = "not_found"
        note = (
            "The error details are no longer available: the Comms API answered 404 for this operation's "
            "error list (past its retention). Counters are from the triggering event."
        )
    except CommsApiError as exc:
        failure = type(exc).__name__
        status = f", HTTP {exc.status}" if exc.status else ""
        note = (
            f"Reading the error list failed after {tally.total} errors ({failure}{status}); "
            "the groups below may be incomplete."
        )
        logger.error(
            "reading the errors of %s failed: %s",
            operation_id,
            exc,
            extra={"operationId": operation_id, "error": failure, "status": exc.status},
        )
    if out_of_time:
        note = f"Stopped reading the error list after {tally.total} errors to stay within the time limit."
    if skipped:
        malformed = f"{skipped} malformed error item(s) from the API were left out."
        note = malformed if note is None else f"{note} {malformed}"
    if failure == "not_found":
        truncated = failed_count > 0
    else:
        truncated = bool(listing.truncated or out_of_time or skipped or failure)
    return ErrorsRead(
        tally=tally, truncated=truncated, note=note, pages=pages, skipped=skipped, failure=failure
    )


def build_summary(trigger: TriggerEvent, operation: ConfirmedOperation, read: ErrorsRead) -> ErrorsSummary:
    """The summary of what was read, with the status and stats the API confirmed (contract §6)."""
    return ErrorsSummary(
        trigger_event_key=trigger.detail.event_key,
        trigger_detail_type=trigger.detail_type,
        account_sid=operation.account_sid,
        operation_id=operation.operation_id,
        status=operation.status,
        stats=dict(operation.stats),
        error_count=read.tally.total,
        truncated=read.truncated,
        groups=tuple(read.tally.groups(MAX_GROUPS)),
        distinct_groups=read.tally.distinct,
        note=read.note,
    )


# -- the orchestration ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertPolicy:
    """What makes a trigger worth an alert: the rule's thresholds and the stall threshold, as the
    alerter reads them (contract §2)."""

    thresholds: Thresholds = field(default_factory=lambda: Thresholds(failed_count=10, failed_rate=0.05))
    stall_after_seconds: int = 1800


class Enricher:
    def __init__(
        self,
        *,
        comms: OperationSource,
        errors: ErrorsSource,
        sink: SummarySink,
        targets: list[AlertTarget],
        budget: AlertBudget,
        ledger: StepLedger,
        telemetry: Telemetry,
        policy: AlertPolicy | None = None,
        event_source: str = DEFAULT_EVENT_SOURCE,
        max_errors: int = DEFAULT_MAX_ERRORS,
        page_size: int = DEFAULT_PAGE_SIZE,
        time_left: Callable[[], float] = lambda: float("inf"),
    ) -> None:
        self._comms = comms
        self._errors = errors
        self._sink = sink
        self._targets = targets
        self._budget = budget
        self._ledger = ledger
        self._telemetry = telemetry
        self._policy = policy or AlertPolicy()
        self._event_source = event_source
        self._max_errors = max_errors
        self._page_size = page_size
        self._time_left = time_left

    def run(self, trigger: TriggerEvent) -> dict[str, Any]:
        """Raises :class:`TriggerNotConfirmed` (nothing done, nothing recorded) or
        :class:`EnrichmentIncomplete` (retry: the finished steps are recorded)."""
        key = trigger.detail.event_key
        operation = ConfirmedOperation.from_record(
            self._ledger.once(STEP_CONFIRM, key, lambda: self._confirm(trigger).to_record())
        )
        budget = self._ledger.once(STEP_BUDGET, key, lambda: self._take_budget(operation))
        result: dict[str, Any] = {
            "triggerEventKey": key,
            "operationId": operation.operation_id,
            "kind": "stall" if trigger.is_stall else "errors",
            "status": operation.status,
        }
        if not budget["allowed"]:
            return result | {"capped": True, "alerts": {}}
        retry: list[str] = []
        alert: Alert
        if trigger.is_stall:
            alert = StallAlert(trigger_event_key=key, operation=operation)
            result["stalledForSeconds"] = operation.stalled_for_seconds
        else:
            alert = self._summary(trigger, operation)
            published = self._publish_once(alert, retry)
            result |= {
                "eventKey": alert.event_key,
                "errorCount": alert.error_count,
                "truncated": alert.truncated,
                "published": published,
            }
        result["alerts"] = self._alert_all(key, alert, retry)
        if retry:
            raise EnrichmentIncomplete("will be retried: " + "; ".join(retry))
        return result

    # -- confirmation and budget ----------------------------------------------------------------------

    def _confirm(self, trigger: TriggerEvent) -> ConfirmedOperation:
        try:
            check_account(trigger, self._comms.account_sid)  # no request about another account
            try:
                operation = self._comms.fetch_operation(trigger.detail.operation_id)
            except CommsNotFound:
                operation = None
            return confirm(
                trigger,
                operation,
                account_sid=self._comms.account_sid,
                thresholds=self._policy.thresholds,
                stall_after_seconds=self._policy.stall_after_seconds,
                api_now=self._comms.now(),
            )
        except TriggerNotConfirmed as exc:
            self._telemetry.count("UnconfirmedTriggers")
            logger.warning(
                "trigger not confirmed by the Comms API: nobody alerted, nothing published: %s",
                exc,
                extra={"reason": exc.reason.value, "detailType": trigger.detail_type},
            )
            raise

    def _take_budget(self, operation: ConfirmedOperation) -> dict[str, Any]:
        allowed = self._budget.take(operation.operation_id)
        if not allowed:
            self._telemetry.count("AlertsCapped")
            logger.warning(
                "the operation reached its hourly alert cap: nothing published, nobody alerted",
                extra={"operationId": operation.operation_id},
            )
        return {"allowed": allowed}

    # -- the errors summary ---------------------------------------------------------------------------

    def _summary(self, trigger: TriggerEvent, operation: ConfirmedOperation) -> ErrorsSummary:
        key = trigger.detail.event_key
        record = self._ledger.once(STEP_SUMMARY, key, lambda: self._summarize(trigger, operation).to_record())
        return ErrorsSummary.from_record(record)

    def _summarize(self, trigger: TriggerEvent, operation: ConfirmedOperation) -> ErrorsSummary:
        read = read_errors(
            self._errors,
            operation.operation_id,
            failed_count=int(operation.stats["failed"]),
            max_errors=self._max_errors,
            page_size=self._page_size,
            time_left=self._time_left,
        )
        self._telemetry.count("ErrorsRead", read.tally.total)
        self._telemetry.count("ErrorGroups", read.tally.distinct)
        if read.skipped:
            self._telemetry.count("MalformedErrorItems", read.skipped)
        if read.failure:
            self._telemetry.count("ErrorsReadFailures")
        summary = fit_summary(build_summary(trigger, operation, read), source=self._event_source)
        logger.info(
            "errors summarized",
            extra={
                "operationId": summary.operation_id,
                "eventKey": summary.event_key,
                "errorCount": summary.error_count,
                "groups": summary.distinct_groups,
                "truncated": summary.truncated,
                "pages": read.pages,
            },
        )
        return summary

    def _publish_once(self, summary: ErrorsSummary, retry: list[str]) -> bool:
        try:
            self._ledger.once(STEP_PUBLISH, summary.trigger_event_key, lambda: self._publish(summary))
        except SummaryNotPublished as exc:
            self._telemetry.count("PublishFailures")
            retry.append(f"summary event: {exc}")
            logger.error(
                "publishing the errors summary failed: %s", exc, extra={"eventKey": summary.event_key}
            )
            return False
        return True

    def _publish(self, summary: ErrorsSummary) -> dict[str, Any]:
        self._sink.publish(summary)
        self._telemetry.count("SummariesPublished")
        return {"eventKey": summary.event_key}

    # -- alerts ---------------------------------------------------------------------------------------

    def _alert_all(self, key: str, alert: Alert, retry: list[str]) -> dict[str, str]:
        alerts: dict[str, str] = {}
        for target in self._targets:
            try:
                result = self._ledger.once(f"alert-{target.name}", key, partial(self._deliver, target, alert))
                alerts[target.name] = str(result["outcome"])
            except AlertFailed as exc:
                alerts[target.name] = "retry"
                retry.append(f"{target.name} alert: {exc}")
        return alerts

    def _deliver(self, target: AlertTarget, alert: Alert) -> dict[str, Any]:
        try:
            target.send(alert)
        except AlertFailed as exc:
            self._telemetry.count("AlertFailures", target=target.name)
            if not exc.retryable:
                self._telemetry.count("PermanentAlertFailures")
            logger.error(
                "%s alert failed (%s): %s",
                target.name,
                "transient, will be retried" if exc.retryable else "permanent, not retried",
                exc,
                extra={"target": target.name, "kind": exc.kind, "retryable": exc.retryable},
            )
            if exc.retryable:
                raise
            return {"outcome": OUTCOME_FAILED, "kind": exc.kind, "reason": str(exc)}
        self._telemetry.count("AlertsSent", target=target.name)
        return {"outcome": OUTCOME_SENT}
