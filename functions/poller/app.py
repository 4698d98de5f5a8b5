"""Scheduled poller: finds Email Operations that changed and publishes their events to EventBridge.

Thin on purpose: everything is in the ``comms_bridge.poller`` package of the layer. Clients are built once
per container, at the first invocation rather than at import, so importing this module stays cheap.
"""

from __future__ import annotations

from typing import Any

from comms_bridge.observability import build
from comms_bridge.poller.runtime import PollerRuntime, secret_arn_of

obs = build("poller")
_runtime: PollerRuntime | None = None


def runtime() -> PollerRuntime:
    global _runtime  # noqa: PLW0603 - one runtime per container, built on first use
    if _runtime is None:
        _runtime = PollerRuntime.from_env()
    return _runtime


@obs.logger.inject_lambda_context(clear_state=True)
@obs.metrics.log_metrics(capture_cold_start_metric=True)
@obs.tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    # Each account's schedule names its secret; refused (nothing read, no request) unless watched.
    summary = runtime().run(context, metrics=obs, secret_arn=secret_arn_of(event))
    obs.logger.info("poller run finished", extra={"summary": summary, "accountSid": summary["accountSid"]})
    return summary
