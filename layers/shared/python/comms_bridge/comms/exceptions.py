"""Exceptions raised by the Comms API client.

Every exception is a ``CommsApiError`` with ``status`` (HTTP status or None), ``code`` and ``message``
(Twilio's error envelope, when the body had one). Messages never contain a credential: they are built
from the status, the endpoint name and Twilio's own ``code``/``message``, never from request headers.
"""

from __future__ import annotations

from collections.abc import Sequence

from comms_bridge.comms.models import ApiErrorDetail


class CommsApiError(Exception):
    """Base of every error of the Comms API client."""

    default_status: int | None = None

    def __init__(
        self,
        summary: str,
        *,
        status: int | None = None,
        code: int | None = None,
        message: str | None = None,
        endpoint: str | None = None,
        errors: Sequence[ApiErrorDetail] = (),
    ) -> None:
        super().__init__(summary)
        self.summary = summary
        self.status = status if status is not None else self.default_status
        self.code = code
        self.message = message
        self.endpoint = endpoint
        # Twilio lists every problem of a 400 at once; ``code``/``message`` are the first of them.
        self.errors: tuple[ApiErrorDetail, ...] = tuple(errors)

    def __str__(self) -> str:
        return self.summary

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"endpoint={self.endpoint!r}, summary={self.summary!r})"
        )


class CommsBadRequest(CommsApiError):
    default_status = 400


class CommsAuthError(CommsApiError):
    """The API refused the credentials (401) or their rights (403). No retry of the call can help: a
    function that meets it fails the invocation, so that its error alarm fires (contract §6)."""


class CommsUnauthorized(CommsAuthError):
    default_status = 401


class CommsForbidden(CommsAuthError):
    default_status = 403


class CommsNotFound(CommsApiError):
    default_status = 404


class CommsServerError(CommsApiError):
    """A 5xx other than 503. Not retried: Twilio says a 500 must not be retried."""

    default_status = 500


class CommsThrottled(CommsApiError):
    """429 or 503 still answered after the retry attempts, or the caller's deadline left no time to wait."""

    def __init__(
        self,
        summary: str,
        *,
        retry_after: float | None = None,
        attempts: int = 0,
        status: int | None = None,
        code: int | None = None,
        message: str | None = None,
        endpoint: str | None = None,
        errors: Sequence[ApiErrorDetail] = (),
    ) -> None:
        super().__init__(summary, status=status, code=code, message=message, endpoint=endpoint, errors=errors)
        self.retry_after = retry_after
        self.attempts = attempts


class CommsTransportError(CommsApiError):
    """Connection failure or timeout, still failing after the bounded retries."""

    def __init__(self, summary: str, *, attempts: int = 0, endpoint: str | None = None) -> None:
        super().__init__(summary, endpoint=endpoint)
        self.attempts = attempts


class CommsMalformedResponse(CommsApiError):
    """A success response whose body is not JSON or lacks the documented envelope.

    A page with some bad items is not this error: those items become ``SkippedItem``s.
    """


class CommsMalformedOperation(CommsMalformedResponse):
    """``fetch_operation`` got an operation that is invalid, or whose ``updatedAt`` lies later than the
    API's clock allows (contract §6): the caller skips it like a malformed list item."""


class CommsResponseTooLarge(CommsApiError):
    """A response body larger than the client accepts (``COMMS_MAX_RESPONSE_BYTES``). Not retried: the
    same request would get the same body."""


class PaginationLoopError(CommsApiError):
    """The API handed back a page token it had already given: following it would never end."""

    def __init__(self, summary: str, *, token: str, pages: int, endpoint: str | None = None) -> None:
        super().__init__(summary, endpoint=endpoint)
        self.token = token
        self.pages = pages


class InvalidOperationId(CommsApiError, ValueError):
    """An operation id that does not match Twilio's pattern; refused before it goes into a URL."""


_BY_STATUS: dict[int, type[CommsApiError]] = {
    400: CommsBadRequest,
    401: CommsUnauthorized,
    403: CommsForbidden,
    404: CommsNotFound,
}


def error_class_for_status(status: int) -> type[CommsApiError]:
    """The exception for a non-retried error status. Branches on the status only, never on the body."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return CommsServerError
    return CommsApiError
