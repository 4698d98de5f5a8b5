"""Errors enricher / alerter Lambda: fed by the errors queue, which ErrorsTriggerRule and StalledAlertRule
fill (contract §1, §3, §4, §6).

Thin on purpose, like the poller's: one call into the runtime in the ``comms_bridge`` layer
(``enricher.runtime``), which takes one EventBridge event or an SQS batch of them, confirms each trigger
against the Comms API and runs the alerter under Powertools Idempotency keyed on the trigger's
``detail.eventKey``. The runtime is built once per container, at the first invocation rather than at
import, so importing this module stays cheap.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from comms_bridge.enricher.adapters import PowertoolsTelemetry
from comms_bridge.enricher.runtime import EnricherRuntime
from comms_bridge.enricher.trigger import TriggerEvent
from comms_bridge.observability import build

obs = build("errors")
_runtime: EnricherRuntime | None = None


def runtime() -> EnricherRuntime:
    global _runtime  # noqa: PLW0603 - one runtime per container, built on first use
    if _runtime is None:
        _runtime = EnricherRuntime.from_env(PowertoolsTelemetry(obs))
    return _runtime


def tag(trigger: TriggerEvent) -> None:
    obs.logger.append_keys(operationId=trigger.detail.operation_id, triggerEventKey=trigger.detail.event_key)


@obs.logger.inject_lambda_context(clear_state=True)
@obs.metrics.log_metrics
@obs.tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return runtime().handle_invocation(event, context, tag)
