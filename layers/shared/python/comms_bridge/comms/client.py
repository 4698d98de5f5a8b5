"""Client of the Twilio Comms API Email Operations endpoints: the endpoints, their arguments and their
pagination. Every request goes through :class:`comms_bridge.comms.transport.CommsTransport` (timeouts,
retries, error mapping, bounded bodies, the API's clock, credential rotation: docs/comms-client.md).
"""

from __future__ import annotations

import copy
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Final, TypeVar
from urllib.parse import quote

import requests
from pydantic import ValidationError

from comms_bridge.comms.credentials import CommsCredentials
from comms_bridge.comms.exceptions import (
    CommsMalformedOperation,
    CommsMalformedResponse,
    InvalidOperationId,
    PaginationLoopError,
)
from comms_bridge.comms.models import (
    EmailOperation,
    MalformedResponseError,
    OperationErrorsPage,
    OperationsPage,
    OperationStatus,
    describe_invalid,
    format_timestamp,
    is_operation_id,
    not_credible,
    parse_operation_errors_page,
    parse_operations_page,
)
from comms_bridge.comms.transport import (
    USER_AGENT,
    CommsTransport,
    RetryPolicy,
    parse_http_date,
    parse_retry_after,
)
from comms_bridge.settings import DEFAULT_MAX_RESPONSE_BYTES, check_comms_api_url

__all__ = [
    "ENDPOINT_FETCH_OPERATION",
    "ENDPOINT_LIST_ERRORS",
    "ENDPOINT_LIST_OPERATIONS",
    "MAX_PAGE_SIZE",
    "USER_AGENT",
    "CommsClient",
    "ErrorPages",
    "RetryPolicy",
    "parse_http_date",
    "parse_retry_after",
]

MAX_PAGE_SIZE: Final = 1000

ENDPOINT_LIST_OPERATIONS: Final = "list_operations"
ENDPOINT_FETCH_OPERATION: Final = "fetch_operation"
ENDPOINT_LIST_ERRORS: Final = "list_errors"

logger = logging.getLogger("comms_bridge.comms.client")

PageT = TypeVar("PageT", OperationsPage, OperationErrorsPage)


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


class CommsClient:
    """The Email Operations endpoints over a :class:`CommsTransport` (one ``requests.Session``, HTTP Basic
    auth).

    ``deadline`` returns the seconds the caller has left (in Lambda: the remaining time minus a safety
    margin); a client kept across invocations gives each one a view with its own (:meth:`with_deadline`).
    ``server_time`` is the ``Date`` of the latest response whose ``Date`` was within ``max_clock_skew``
    seconds of the local clock: the API's clock (contract §3, §6). ``max_clock_skew`` None trusts any
    ``Date`` (the functions pass ``MAX_CLOCK_SKEW_SECONDS``); it also bounds a credible ``updatedAt``.
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
        max_clock_skew: float | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        refresh_credentials: Callable[[], CommsCredentials] | None = None,
    ) -> None:
        base = base_url.rstrip("/")
        check_comms_api_url(base, what="the Comms API base URL")
        self.base_url = base
        self.transport = CommsTransport(
            credentials,
            session=session,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retry=retry,
            sleep=sleep,
            deadline=deadline,
            rng=rng,
            clock=clock,
            max_clock_skew=max_clock_skew,
            max_response_bytes=max_response_bytes,
            refresh_credentials=refresh_credentials,
        )

    def __repr__(self) -> str:
        return f"CommsClient(base_url={self.base_url!r}, account_sid={self.account_sid!r})"

    @property
    def account_sid(self) -> str:
        return self.transport.account_sid

    @property
    def deadline(self) -> Callable[[], float] | None:
        return self.transport.deadline

    @property
    def server_time(self) -> datetime | None:
        return self.transport.clock.server_time

    @property
    def distrusted_dates(self) -> int:
        """Responses whose ``Date`` was farther from the local clock than ``max_clock_skew``."""
        return self.transport.clock.distrusted

    @property
    def request_count(self) -> int:
        return self.transport.request_count

    @property
    def request_counts(self) -> dict[str, int]:
        return self.transport.request_counts

    def with_deadline(self, deadline: Callable[[], float] | None) -> CommsClient:
        """This client with another ``deadline``: same session, credentials, counters and API clock, so a
        client kept across invocations serves each one with that invocation's time left. Closing the view
        leaves the session open (it belongs to this client)."""
        view = copy.copy(self)
        view.transport = self.transport.with_deadline(deadline)
        return view

    def now(self) -> datetime:
        """The API's clock as of its latest trusted response; the local clock before any."""
        return self.transport.clock.now()

    def close(self) -> None:
        """Close the session if the client made it (an injected session belongs to its owner)."""
        self.transport.close()

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
        ``pagination.next`` until it is null. Filters are checked before the first request. An operation
        dated later than the API's clock allows is a skipped item (contract §6)."""
        params: dict[str, str] = {"pageSize": str(_checked_page_size(page_size))}
        if start_date is not None:
            params["startDate"] = format_timestamp(_aware(start_date, "start_date"))
        if end_date is not None:
            params["endDate"] = format_timestamp(_aware(end_date, "end_date"))
        if status is not None:
            params["status"] = OperationStatus(status).value

        def parse(payload: object) -> OperationsPage:
            return parse_operations_page(payload, latest=self.transport.clock.latest_credible())

        return self._paginate(ENDPOINT_LIST_OPERATIONS, f"{self.base_url}/Emails/Operations", params, parse)

    def fetch_operation(self, operation_id: str) -> EmailOperation:
        """``GET /Emails/Operations/{id}``; ``CommsNotFound`` for an unknown id, ``CommsMalformedOperation``
        for an invalid one or one dated later than the API's clock allows."""
        url = self._operation_url(operation_id)
        payload = self.transport.get_json(ENDPOINT_FETCH_OPERATION, url, {})
        try:
            operation = EmailOperation.model_validate(payload)
        except ValidationError as exc:
            raise CommsMalformedOperation(
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
        reason = not_credible(operation, self.transport.clock.latest_credible())
        if reason is not None:
            raise CommsMalformedOperation(
                f"Comms API fetch_operation returned an operation that cannot be believed: {reason}",
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
            page = self._parse(endpoint, self.transport.get_json(endpoint, url, query), parse)
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


def _checked_page_size(page_size: int) -> int:
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be an integer from 1 to {MAX_PAGE_SIZE}")
    return page_size


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value
