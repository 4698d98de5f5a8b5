"""AWS error codes: which ones a retry can mend, and how to read a code off any failure we get."""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import urlsplit

from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

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


def describe_failure(exc: BaseException) -> str:
    """A failure to reach or use AWS in words a person can act on: the host and the cause of a transport
    failure, the missing setting, or the AWS error code. Looks through one library wrapper (Powertools'
    ``GetParameterError``). Never carries secret material."""
    for candidate in (exc, exc.__cause__, exc.__context__):
        if isinstance(candidate, NoRegionError):
            return "no AWS region is set: set AWS_REGION"
        if isinstance(candidate, NoCredentialsError):
            return "no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        if isinstance(candidate, HTTPClientError | BotoConnectionError):
            kwargs = getattr(candidate, "kwargs", {})
            host = urlsplit(str(kwargs.get("endpoint_url", ""))).netloc or "the AWS endpoint"
            if isinstance(candidate, ConnectTimeoutError | ReadTimeoutError):
                return f"cannot reach {host}: timed out"
            cause = str(kwargs.get("error", ""))
            match = _ERRNO_TEXT.search(cause) or _ERRNO_TEXT.search(str(candidate.__context__ or ""))
            return f"cannot reach {host}: {match.group(1).strip().lower() if match else 'connection failed'}"
    code = error_code(exc)
    for candidate in (exc, exc.__cause__, exc.__context__):
        if isinstance(candidate, ClientError) and error_message(candidate):
            return f"{code}: {error_message(candidate)}"
    return code


_ERRNO_TEXT: Final = re.compile(r"\[Errno -?\d+\] ([A-Za-z ]+)")
