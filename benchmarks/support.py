"""The one place the benchmarks and the fault suite import the stack loader, the AWS fault proxy and the
Lambda runtime from."""

from __future__ import annotations

from typing import Any

from comms_bridge_tools.lambda_runtime import LambdaFunction
from comms_bridge_tools.local_stack import LocalStack
from tests.support.aws_fault_proxy import AwsFault, AwsFaultProxy

__all__ = ["AwsFault", "AwsFaultProxy", "LambdaFunction", "LocalStack", "lambda_function"]


def lambda_function(name: str, **kwargs: Any) -> LambdaFunction:
    """``functions/<name>`` as Lambda would run it (tools/comms_bridge_tools/lambda_runtime.py)."""
    return LambdaFunction(f"functions/{name}", **kwargs)
