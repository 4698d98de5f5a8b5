"""Client of the Twilio Comms API Email Operations endpoints.

Behaviour on failure (docs/comms-client.md):

- 429 and 503 are retried after ``Retry-After`` (seconds or an HTTP date, the latter measured against
  the response's own ``Date`` so a skewed local clock does not matter), plus a capped, jittered backoff;
  never beyond the caller's deadline and never more than ``RetryPolicy.max_attempts`` requests.
- Connection errors and timeouts are retried ``RetryPolicy.transport_attempts`` requests in all
  (every call is an idempotent GET).
- 500 (and any 5xx but 503) is not retried, as Twilio asks. 400/401/403/404 raise typed errors.
- The status decides the outcome, never the body's shape: a list of operation errors and the API's
  error envelope both use the key ``errors``.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final, TypeVar
from urllib.parse import quote, urlsplit

import requests
from pydantic import ValidationError
from requests.auth import HTTPBasicAuth

from comms_bridge.comms.credentials import CommsCredentials
from comms_bridge.comms.exceptions import (
    CommsApiError,
    CommsMalformedResponse,
    CommsThrottled,
    CommsTransportError,
    InvalidOperationId,
    PaginationLoopError,
    error_class_for_status,
)
from comms_bridge.comms.models import (
    ApiErrorDetail,
    ApiErrorEnvelope,
    EmailOperation,
    MalformedResponseError,
    OperationErrorsPage,
    OperationsPage,
    OperationStatus,
    describe_invalid,
    format_timestamp,
    is_operation_id,
    parse_operation_errors_page,
    parse_operations_page,
)
from comms_bridge.settings import check_secure_url

__version__: Final = "0.1.0"
USER_AGENT: Final = f"comms-bridge/{__version__}"
MAX_PAGE_SIZE: Final = 1000
THROTTLE_STATUSES: Final = frozenset({429, 503})

ENDPOINT_LIST_OPERATIONS: Final = "list_operations"
ENDPOINT_FETCH_OPERATION: Final = "fetch_operation"
ENDPOINT_LIST_ERRORS: Final = "list_errors"

logger = logging.getLogger("comms_bridge.comms.client")

PageT = TypeVar("PageT", OperationsPage, OperationErrorsPage)

_TRANSPORT_ERRORS: Final = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard the client tries. Defaults suit a poller that runs every minute."""

    max_attempts: int = 4
    """Requests in all (first one included) for an answer of 429/503."""
    transport_attempts: int = 3
    """Requests in all (first one included) for connection errors and timeouts."""
    backoff_base: float = 0.5
    backoff_cap: float = 8.0
    retry_after_jitter: float = 1.0
    """Most seconds of jitter added on top of a ``Retry-After``, so that throttled callers spread out."""
    max_retry_after: float = 60.0
    """A longer ``Retry-After`` is not waited for: ``CommsThrottled`` is raised at once."""
    min_request_time: float = 1.0
    """Seconds that must remain after a wait for one more request to be worth sending."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.transport_attempts < 1:
            raise ValueError("max_attempts and transport_attempts must be at least 1")
        if min(self.backoff_base, self.backoff_cap, self.retry_after_jitter, self.min_request_time) < 0:
            raise ValueError("delays must not be negative")

    def backoff_ceiling(self, retry_number: int) -> float:
        """The exponential step for the ``retry_number``-th retry (1 = first retry), capped."""
        exponent = min(max(retry_number - 1, 0), 32)
        return float(min(self.backoff_cap, self.backoff_base * (2**exponent)))

    def delay(self, retry_number: int, retry_after: float | None, rand: float) -> float:
        """Seconds to wait before retry ``retry_number``; ``rand`` is uniform in [0, 1).

        Without ``Retry-After``: equal jitter, between half and all of the capped exponential step.
        With it: the server's wait plus up to ``retry_after_jitter`` seconds (growing with the step).
        """
        rand = min(max(rand, 0.0), 1.0)
        ceiling = self.backoff_ceiling(retry_number)
        if retry_after is None:
            return ceiling / 2 + rand * ceiling / 2
        return max(retry_after, 0.0) + rand * min(self.retry_after_jitter, ceiling)


def parse_http_date(value: str | None) -> datetime | None:
    """An HTTP date (``Sun, 06 Nov 1994 08:49:37 GMT``) as an aware UTC datetime, None if absent or bad."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        # RFC 9110 dates are always GMT; ``-0000`` parses as naive.
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_retry_after(value: str | None, *, response_date: datetime | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    An HTTP date is measured against the response's ``Date`` (the API's clock) when there is one, and
    only otherwise against the local ``now``. None when the header is absent or unreadable.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        return float(int(text))
    try:
        seconds = float(text)
    except ValueError:
        seconds = None
    if seconds is not None:
        # Not RFC syntax, but some servers send "1.5"; a negative, NaN or infinite value is noise.
        return seconds if 0 <= seconds < float("inf") else None
    retry_at = parse_http_date(text)
    if retry_at is None:
        return None
    reference = response_date if response_date is not None else now
    return max((retry_at - reference).total_seconds(), 0.0)


class ErrorPages(Iterator[OperationErrorsPage]):
    """The pages of an operation's errors, stopping once ``max_items`` items were read.

    Skipped (malformed) items count as read: ``max_items`` bounds the work, whatever the items hold.
    After iterating, ``items_read`` says how many items the pages carried and ``truncated`` whether the
    API had more than were read (a last page cut short, or a ``next`` token left unfollowed).
    """

    def __init__(
        self, max_items: int, open_pages: Callable[[Callable[[], int]], Iterator[OperationErrorsPage]]
    ) -> None:
        self._max_items = max_items
        self.items_read = 0
        self.truncated = False
        self._done = False
        self._pages = open_pages(self.remaining)

    def remaining(self) -> int:
        return self._max_items - self.items_read

    def __iter__(self) -> ErrorPages:
        return self

    def __next__(self) -> OperationErrorsPage:
        if self._done:
            raise StopIteration
        page = next(self._pages)
        remaining = self.remaining()
        count = len(page.errors) + len(page.skipped)
        if count >= remaining:
            self._done = True
            if count > remaining or page.next_token is not None:
                self.truncated = True
            if count > remaining:
                # The API sent more than the pageSize asked for: keep the first ``remaining`` items.
                kept_skipped = [s for s in page.skipped if s.index < remaining]
                page = page.model_copy(
                    update={"errors": page.errors[: remaining - len(kept_skipped)], "skipped": kept_skipped}
                )
                count = remaining
        self.items_read += count
        return page


@dataclass
class _Tally:
    """What a client and its deadline views (:meth:`CommsClient.with_deadline`) count and learn together."""

    server_time: datetime | None = None
    request_count: int = 0
    request_counts: dict[str, int] = field(default_factory=dict)


class CommsClient:
    """The Email Operations endpoints over one ``requests.Session`` with HTTP Basic auth.

    ``deadline`` returns the seconds the caller has left (in Lambda: the remaining time minus a safety
    margin); a client kept across invocations gives each one a view with its own (:meth:`with_deadline`).
    ``server_time`` is the ``Date`` of the latest response: the API's clock (contract §3).
    """

    def __init__(
        self,
        base_url: str,
        credentials: CommsCredentials,
        *,
        session: requests.Session | None = None,
        connect_timeout: float = 3.05,
        read_timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        deadline: Callable[[], float] | None = None,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        base = base_url.rstrip("/")
        check_secure_url(base, what="the Comms API base URL")
        parts = urlsplit(base)
        if parts.username is not None or parts.password is not None:
            raise ValueError("the Comms API base URL must not carry credentials; pass CommsCredentials")
        if connect_timeout <= 0 or read_timeout <= 0:
            raise ValueError("timeouts must be positive")
        self.base_url = base
        self.account_sid = credentials.account_sid
        self._auth = HTTPBasicAuth(credentials.username, credentials.password)
        self._redactor = _Redactor(credentials.password)
        self._owns_session = session is None
        self._session = session if session is not None else requests.Session()
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.retry = retry if retry is not None else RetryPolicy()
        self._sleep = sleep
        self.deadline = deadline
        self._rng = rng
        self._clock = clock if clock is not None else _utc_now
        self._tally = _Tally()

    def __repr__(self) -> str:
        return f"CommsClient(base_url={self.base_url!r}, account_sid={self.account_sid!r})"

    @property
    def server_time(self) -> datetime | None:
        return self._tally.server_time

    @property
    def request_count(self) -> int:
        return self._tally.request_count

    @property
    def request_counts(self) -> dict[str, int]:
        return self._tally.request_counts

    def with_deadline(self, deadline: Callable[[], float] | None) -> CommsClient:
        """This client with another ``deadline``: same session, credentials, counters and API clock, so a
        client kept across invocations serves each one with that invocation's time left. Closing the view
        leaves the session open (it belongs to this client)."""
        view = copy.copy(self)
        view.deadline = deadline
        view._owns_session = False
        return view

    def now(self) -> datetime:
        """The API's clock as of its latest response; the local clock before any response."""
        return self.server_time if self.server_time is not None else self._clock()

    def close(self) -> None:
        """Close the session if the client made it (an injected session belongs to its owner)."""
        if self._owns_session:
            self._session.close()

    # -- endpoints -------------------------------------------------------------------------------------

    def list_operations(
        self,
        *,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
        status: OperationStatus | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> Iterator[OperationsPage]:
        """Yield every page of ``GET /Emails/Operations`` (valid operations + skipped items), following
        ``pagination.next`` until it is null. Filters are checked before the first request."""
        params: dict[str, str] = {"pageSize": str(_checked_page_size(page_size))}
        if start_date is not None:
            params["startDate"] = format_timestamp(_aware(start_date, "start_date"))
        if end_date is not None:
            params["endDate"] = format_timestamp(_aware(end_date, "end_date"))
        if status is not None:
            params["status"] = OperationStatus(status).value
        return self._paginate(
            ENDPOINT_LIST_OPERATIONS, f"{self.base_url}/Emails/Operations", params, parse_operations_page
        )

    def fetch_operation(self, operation_id: str) -> EmailOperation:
        """``GET /Emails/Operations/{id}``; ``CommsNotFound`` for an unknown id."""
        url = self._operation_url(operation_id)
        payload = self._get_json(ENDPOINT_FETCH_OPERATION, url, {})
        try:
            operation = EmailOperation.model_validate(payload)
        except ValidationError as exc:
            raise CommsMalformedResponse(
                f"Comms API fetch_operation returned an invalid operation: {describe_invalid(exc)}",
                status=200,
                endpoint=ENDPOINT_FETCH_OPERATION,
            ) from None
        if operation.id != operation_id:
            raise CommsMalformedResponse(
                "Comms API fetch_operation returned a different operation than the one asked for",
                status=200,
                endpoint=ENDPOINT_FETCH_OPERATION,
            )
        return operation

    def list_operation_errors(
        self, operation_id: str, *, max_items: int, page_size: int = MAX_PAGE_SIZE
    ) -> ErrorPages:
        """Yield pages of ``GET /Emails/Operations/{id}/Errors`` until ``max_items`` items (errors and
        skipped malformed items) were read or the list ends. The returned iterator's ``truncated`` says
        whether more existed."""
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        url = f"{self._operation_url(operation_id)}/Errors"
        size = _checked_page_size(page_size)

        def open_pages(remaining: Callable[[], int]) -> Iterator[OperationErrorsPage]:
            # Ask for no more than still needed, so the last page is not fetched in full for nothing.
            return self._paginate(
                ENDPOINT_LIST_ERRORS,
                url,
                lambda: {"pageSize": str(min(size, remaining()))},
                parse_operation_errors_page,
            )

        return ErrorPages(max_items, open_pages)

    # -- plumbing --------------------------------------------------------------------------------------

    def _operation_url(self, operation_id: str) -> str:
        if not isinstance(operation_id, str) or not is_operation_id(operation_id):
            raise InvalidOperationId(
                "not a Comms operation id (expected comms_operation_ followed by 26-35 base32 characters)"
            )
        # The pattern already excludes anything needing escapes; quoting keeps it that way if it changes.
        return f"{self.base_url}/Emails/Operations/{quote(operation_id, safe='')}"

    def _paginate(
        self,
        endpoint: str,
        url: str,
        params: Mapping[str, str] | Callable[[], Mapping[str, str]],
        parse: Callable[[object], PageT],
    ) -> Iterator[PageT]:
        seen: set[str] = set()
        token: str | None = None
        pages = 0
        while True:
            query = dict(params() if callable(params) else params)
            if token is not None:
                query["pageToken"] = token
            page = self._parse(endpoint, self._get_json(endpoint, url, query), parse)
            pages += 1
            if token is not None:
                seen.add(token)
            if page.self_token:
                seen.add(page.self_token)
            next_token = page.next_token
            if next_token is not None and next_token in seen:
                raise PaginationLoopError(
                    f"Comms API {endpoint} returned a page token it had already given (after {pages} pages); "
                    "stopping instead of looping",
                    token=next_token,
                    pages=pages,
                    endpoint=endpoint,
                )
            yield page
            if not next_token:
                return
            token = next_token

    def _parse(self, endpoint: str, payload: object, parse: Callable[[object], PageT]) -> PageT:
        try:
            page = parse(payload)
        except MalformedResponseError as exc:
            raise CommsMalformedResponse(
                f"Comms API {endpoint} response is malformed: {exc}", status=200, endpoint=endpoint
            ) from None
        if page.skipped:
            logger.warning(
                "Comms API %s page had %d malformed item(s), skipped",
                endpoint,
                len(page.skipped),
                extra={"endpoint": endpoint, "skipped": len(page.skipped)},
            )
        return page

    def _get_json(self, endpoint: str, url: str, params: Mapping[str, str]) -> object:
        response = self._request(endpoint, url, params)
        try:
            return json.loads(response.content)
        except ValueError:
            raise CommsMalformedResponse(
                f"Comms API {endpoint} returned a body that is not JSON (HTTP {response.status_code})",
                status=response.status_code,
                endpoint=endpoint,
            ) from None

    def _request(self, endpoint: str, url: str, params: Mapping[str, str]) -> requests.Response:
        throttled = 0
        transport_failures = 0
        while True:
            self._tally.request_count += 1
            self._tally.request_counts[endpoint] = self._tally.request_counts.get(endpoint, 0) + 1
            started = time.monotonic()
            try:
                response = self._session.get(
                    url,
                    params=dict(params),
                    auth=self._auth,
                    headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
                    timeout=(self.connect_timeout, self._read_timeout()),
                    allow_redirects=False,
                )
            except _TRANSPORT_ERRORS as exc:
                transport_failures += 1
                self._wait_after_transport_error(endpoint, exc, transport_failures)
                continue
            except requests.RequestException as exc:
                raise CommsTransportError(
                    self._redact(f"Comms API {endpoint} request failed: {type(exc).__name__}: {exc}"),
                    attempts=transport_failures + throttled + 1,
                    endpoint=endpoint,
                ) from None
            self._record_server_time(response)
            status = response.status_code
            logger.debug(
                "Comms API %s -> HTTP %d in %.3fs",
                endpoint,
                status,
                time.monotonic() - started,
                extra={"endpoint": endpoint, "status": status},
            )
            if 200 <= status < 300:
                return response
            if status in THROTTLE_STATUSES:
                throttled += 1
                self._wait_after_throttle(endpoint, response, throttled)
                continue
            raise self._error(endpoint, response)

    def _read_timeout(self) -> float:
        # A read that outlives the caller's deadline would only get the Lambda killed mid-request.
        if self.deadline is None:
            return self.read_timeout
        return max(min(self.read_timeout, self.deadline()), 0.1)

    def _time_left(self) -> float | None:
        return None if self.deadline is None else self.deadline()

    def _fits_deadline(self, delay: float) -> bool:
        left = self._time_left()
        return left is None or delay + self.retry.min_request_time <= left

    def _wait_after_throttle(self, endpoint: str, response: requests.Response, throttled: int) -> None:
        status = response.status_code
        retry_after = parse_retry_after(
            response.headers.get("Retry-After"),
            response_date=parse_http_date(response.headers.get("Date")),
            now=self._clock(),
        )
        envelope = [self._redact_detail(d) for d in _error_envelope(response)]
        detail = envelope[0] if envelope else None
        reason = ""
        delay = self.retry.delay(throttled, retry_after, self._rng())
        if throttled >= self.retry.max_attempts:
            reason = f"after {throttled} attempts"
        elif retry_after is not None and retry_after > self.retry.max_retry_after:
            reason = f"Retry-After {retry_after:.0f}s exceeds the {self.retry.max_retry_after:.0f}s limit"
        elif not self._fits_deadline(delay):
            reason = f"no time left to wait {delay:.2f}s (deadline)"
        if reason:
            raise CommsThrottled(
                self._redact(
                    f"Comms API {endpoint} throttled (HTTP {status}) {reason}{_twilio_suffix(detail)}"
                ),
                retry_after=retry_after,
                attempts=throttled,
                status=status,
                code=detail.code if detail else None,
                message=detail.message if detail else None,
                endpoint=endpoint,
                errors=envelope,
            )
        logger.warning(
            "Comms API %s answered HTTP %d; retrying in %.2fs (attempt %d of %d)",
            endpoint,
            status,
            delay,
            throttled + 1,
            self.retry.max_attempts,
            extra={"endpoint": endpoint, "status": status, "retry_after": retry_after, "delay": delay},
        )
        self._sleep(delay)

    def _wait_after_transport_error(self, endpoint: str, exc: Exception, failures: int) -> None:
        kind = transport_cause(exc)
        delay = self.retry.delay(failures, None, self._rng())
        reason = ""
        if failures >= self.retry.transport_attempts:
            reason = f"after {failures} attempts"
        elif not self._fits_deadline(delay):
            reason = "with no time left to retry (deadline)"
        if reason:
            host = urlsplit(self.base_url).netloc
            raise CommsTransportError(
                self._redact(f"Comms API {endpoint} at {host} failed ({kind}) {reason}"),
                attempts=failures,
                endpoint=endpoint,
            ) from None
        logger.warning(
            "Comms API %s failed (%s); retrying in %.2fs (attempt %d of %d)",
            endpoint,
            kind,
            delay,
            failures + 1,
            self.retry.transport_attempts,
            extra={"endpoint": endpoint, "error": kind, "delay": delay},
        )
        self._sleep(delay)

    def _error(self, endpoint: str, response: requests.Response) -> CommsApiError:
        status = response.status_code
        envelope = [self._redact_detail(d) for d in _error_envelope(response)]
        detail = envelope[0] if envelope else None
        cls = error_class_for_status(status)
        summary = f"Comms API {endpoint} failed: HTTP {status}{_twilio_suffix(detail)}"
        logger.info(
            "Comms API %s answered HTTP %d", endpoint, status, extra={"endpoint": endpoint, "status": status}
        )
        return cls(
            self._redact(summary),
            status=status,
            code=detail.code if detail else None,
            message=detail.message if detail else None,
            endpoint=endpoint,
            errors=envelope,
        )

    def _record_server_time(self, response: requests.Response) -> None:
        server_time = parse_http_date(response.headers.get("Date"))
        if server_time is not None:
            self._tally.server_time = server_time

    def _redact_detail(self, detail: ApiErrorDetail) -> ApiErrorDetail:
        if detail.message is None:
            return detail
        return detail.model_copy(update={"message": self._redact(detail.message)})

    def _redact(self, text: str) -> str:
        return self._redactor(text)


def transport_cause(exc: Exception) -> str:
    """What went wrong on the wire, in words a person can act on (``connection refused``, ``host name not
    resolved``, ``read timeout``), without the URL or anything else the exception text may carry."""
    if isinstance(exc, requests.ConnectTimeout):
        return "connect timeout"
    if isinstance(exc, requests.Timeout):
        return "read timeout"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake failed"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "connection dropped mid-response"
    text = str(exc)
    if "NameResolutionError" in text or "Name or service not known" in text or "getaddrinfo" in text:
        return "host name not resolved"
    errno_text = _ERRNO_TEXT.search(text)
    if errno_text:
        return errno_text.group(1).strip().lower()
    return type(exc).__name__


_ERRNO_TEXT: Final = re.compile(r"\[Errno -?\d+\] ([A-Za-z ]+)")


class _Redactor:
    """Blanks the secret out of text. Belt and braces: nothing the client builds includes a secret, but a
    server message echoed into an exception might. Its repr stays blank too (``vars(client)`` is safe)."""

    __slots__ = ("_secret",)

    def __init__(self, secret: str) -> None:
        self._secret = secret

    def __call__(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def __repr__(self) -> str:
        return "_Redactor(***)"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _checked_page_size(page_size: int) -> int:
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be an integer from 1 to {MAX_PAGE_SIZE}")
    return page_size


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value


def _error_envelope(response: requests.Response) -> list[ApiErrorDetail]:
    """The entries of Twilio's error envelope; empty for a non-JSON or differently shaped body."""
    try:
        payload: Any = json.loads(response.content)
        return list(ApiErrorEnvelope.model_validate(payload).errors)
    except (ValueError, ValidationError):
        return []


def _twilio_suffix(detail: ApiErrorDetail | None) -> str:
    if detail is None or (detail.code is None and not detail.message):
        return ""
    return f" (Twilio error {detail.code}: {detail.message})"
