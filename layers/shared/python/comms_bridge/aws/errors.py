"""AWS error codes: which ones a retry can mend, and how to read a code off any failure we get."""

from __future__ import annotations

from typing import Final

from botocore.exceptions import ClientError

RETRYABLE_CODES: Final = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
    }
)
"""Codes worth another attempt after botocore's own retries: throttling and transient server faults. Anything
else (a missing table, a validation error, access denied) fails the same way every time."""

CONDITION_FAILED: Final = "ConditionalCheckFailedException"


def error_code(exc: BaseException) -> str:
    """The AWS error code of ``exc`` (a ``ClientError``), or of its cause when a library wrapped it
    (Powertools' ``GetParameterError``); the exception's class name when there is none. Never carries secret
    material."""
    for candidate in (exc, exc.__cause__, exc.__context__):
        response = getattr(candidate, "response", None)
        if isinstance(response, dict):
            code = response.get("Error", {}).get("Code")
            if isinstance(code, str) and code:
                return code
    if isinstance(exc, ClientError):
        return "ClientError"
    return type(exc.__cause__ or exc.__context__ or exc).__name__


def error_message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", ""))


def is_retryable(exc: ClientError) -> bool:
    return error_code(exc) in RETRYABLE_CODES


def is_condition_failed(exc: ClientError) -> bool:
    return error_code(exc) == CONDITION_FAILED
