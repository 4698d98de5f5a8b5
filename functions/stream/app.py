"""Event Streams consumer (the push path): the target of the Kinesis event source mapping.

Thin on purpose: everything is in the ``comms_bridge.stream`` package of the layer. Answers Lambda's partial
batch response (``batchItemFailures``), so a retry starts from the first record that was not finished.
"""

from __future__ import annotations

from typing import Any

from comms_bridge.observability import build
from comms_bridge.stream.runtime import StreamRuntime

obs = build("stream")
_runtime: StreamRuntime | None = None


def runtime() -> StreamRuntime:
    global _runtime  # noqa: PLW0603 - one runtime per container, built on first use
    if _runtime is None:
        _runtime = StreamRuntime.from_env()
    return _runtime


@obs.logger.inject_lambda_context(clear_state=True)
@obs.metrics.log_metrics  # no ColdStart metric: the logs carry cold_start (docs/observability.md)
@obs.tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    response, outcome = runtime().handle(event, context, metrics=obs)
    obs.logger.info("stream batch finished", extra={"outcome": outcome.as_dict()})
    return response
