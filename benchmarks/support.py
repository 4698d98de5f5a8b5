"""The one place the benchmarks and the fault suite import the test-support pieces from (the stack
loader and the AWS fault proxy may move from tests/support to the tools package)."""

from __future__ import annotations

from typing import Any

from comms_bridge_tools.lambda_runtime import LambdaFunction

try:
    from comms_bridge_tools.local_stack import LocalStack  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - depends on where the lead keeps it
    from tests.support.stack import LocalStack  # type: ignore[attr-defined,assignment,no-redef,unused-ignore]

try:
    from comms_bridge_tools.aws_fault_proxy import (  # type: ignore[import-not-found,unused-ignore]
        AwsFault,
        AwsFaultProxy,
    )
except ImportError:  # pragma: no cover
    from tests.support.aws_fault_proxy import (  # type: ignore[assignment,no-redef,unused-ignore]
        AwsFault,
        AwsFaultProxy,
    )

__all__ = ["AwsFault", "AwsFaultProxy", "LambdaFunction", "LocalStack", "lambda_function"]


def lambda_function(name: str, **kwargs: Any) -> LambdaFunction:
    """``functions/<name>`` as Lambda would run it (tools/comms_bridge_tools/lambda_runtime.py)."""
    return LambdaFunction(f"functions/{name}", **kwargs)
