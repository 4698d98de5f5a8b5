"""One GET to the Comms API, and everything about it that is not an endpoint: timeouts, retries and their
waits, error mapping, redaction, bounded bodies, the API's clock and credential rotation.

Behaviour on failure (docs/comms-client.md):

- 429 and 503 are retried after ``Retry-After`` (seconds or an HTTP date, the latter measured against
  the response's own ``Date`` so a skewed local clock does not matter), plus a capped, jittered backoff;
  never beyond the caller's deadline and never more than ``RetryPolicy.max_attempts`` requests.
- Connection errors and timeouts are retried ``RetryPolicy.transport_attempts`` requests in all
  (every call is an idempotent GET).
- 500 (and any 5xx but 503) is not retried, as Twilio asks. 400/401/403/404 raise typed errors.
- The status decides the outcome, never the body's shape: a list of operation errors and the API's
  error envelope both use the key ``errors``.
- A 401 re-reads the credentials once (``refresh_credentials``, when given) and retries with them: a
  rotated secret is picked up at once. Still 401: :class:`CommsUnauthorized`.

Bounds (contract §6): a body is streamed and must fit in ``max_response_bytes`` and arrive completely
within the time a read may take (the read timeout, capped by the caller's deadline); a longer or slower
body is an error, not an out-of-memory or a hang. The ``Date`` of a response is the API's clock (§3)
only within ``max_clock_skew`` seconds of the local clock; a farther one is counted and ignored.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Final
from urllib.parse import urlsplit

import requests
from pydantic import ValidationError
from requests.auth import HTTPBasicAuth
from urllib3.exceptions import DecodeError, ProtocolError, ReadTimeoutError

from comms_bridge.comms.credentials import CommsCredentials
from comms_bridge.comms.exceptions import (
    CommsApiError,
    CommsMalformedResponse,
    CommsResponseTooLarge,
    CommsThrottled,
    CommsTransportError,
    CommsUnauthorized,
    error_class_for_status,
)
from comms_bridge.comms.models import ApiErrorDetail, ApiErrorEnvelope
from comms_bridge.settings import DEFAULT_MAX_RESPONSE_BYTES

__version__: Final = "0.1.0"
USER_AGENT: Final = f"comms-bridge/{__version__}"
THROTTLE_STATUSES: Final = frozenset({429, 503})
_CHUNK_BYTES: Final = 64 * 1024

logger = logging.getLogger("comms_bridge.comms.transport")

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
    except (TypeError, ValueError, IndexError, OverflowError):
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


class ApiClock:
    """The API's clock as the ``Date`` headers tell it (contract §3), trusted only within ``max_skew``
    seconds of the local clock (§6; None: any ``Date``). A distrusted ``Date`` is counted and otherwise
    ignored: :meth:`now` stays at the latest trusted one, and is the local clock before any."""

    def __init__(self, local: Callable[[], datetime], max_skew: float | None) -> None:
        if max_skew is not None and max_skew <= 0:
            raise ValueError("max_skew must be positive (or None)")
        self.local = local
        self.max_skew = None if max_skew is None else timedelta(seconds=max_skew)
        self.server_time: datetime | None = None
        self.distrusted = 0

    def observe(self, date: datetime | None) -> bool:
        """Take a response's ``Date``; False (and counted) when it is too far from the local clock."""
        if date is None:
            return True
        if self.max_skew is not None and abs(date - self.local()) > self.max_skew:
            self.distrusted += 1
            return False
        self.server_time = date
        return True

    def now(self) -> datetime:
        return self.server_time if self.server_time is not None else self.local()

    def latest_credible(self) -> datetime | None:
        """The latest ``updatedAt`` the API can be believed to have written (``now`` plus the bound)."""
        return None if self.max_skew is None else self.now() + self.max_skew


@dataclass(frozen=True)
class ApiResponse:
    """A response whose body was read completely (within the size and time bounds)."""

    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass
class _Shared:
    """What a transport and its deadline views (:meth:`CommsTransport.with_deadline`) have in common."""

    credentials: CommsCredentials
    clock: ApiClock
    request_count: int = 0
    request_counts: dict[str, int] = field(default_factory=dict)
    credential_refreshes: int = 0
    secrets: set[str] = field(default_factory=set, repr=False)

    @property
    def auth(self) -> HTTPBasicAuth:
        return HTTPBasicAuth(self.credentials.username, self.credentials.password)

    def rotate(self, fresh: CommsCredentials, endpoint: str) -> bool:
        """Take credentials re-read after a 401; True when they differ from the ones refused."""
        self.credential_refreshes += 1
        self.secrets.add(fresh.password)
        old = self.credentials
        if fresh.account_sid != old.account_sid:
            raise CommsUnauthorized(
                f"Comms API {endpoint}: HTTP 401, and the re-read secret names another account; "
                "the function keeps to the account it started with (redeploy to change it)",
                endpoint=endpoint,
            )
        if (fresh.username, fresh.password) == (old.username, old.password):
            return False
        self.credentials = fresh
        logger.warning(
            "Comms API %s answered HTTP 401; the secret was re-read and holds new credentials, retrying",
            endpoint,
            extra={"endpoint": endpoint},
        )
        return True

    def redact_detail(self, detail: ApiErrorDetail) -> ApiErrorDetail:
        if detail.message is None:
            return detail
        return detail.model_copy(update={"message": self.redact(detail.message)})

    def redact(self, text: str) -> str:
        """Blanks every secret this transport ever held out of text. Belt and braces: nothing the client
        builds includes a secret, but a server message echoed into an exception might."""
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


class CommsTransport:
    """GETs over one ``requests.Session`` with HTTP Basic auth. ``deadline`` returns the seconds the
    caller has left; a transport kept across invocations gives each one a view with its own
    (:meth:`with_deadline`), sharing session, credentials, counters and the API's clock."""

    def __init__(
        self,
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
        if connect_timeout <= 0 or read_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if max_response_bytes < 1:
            raise ValueError("max_response_bytes must be positive")
        self._shared = _Shared(credentials, ApiClock(clock or _utc_now, max_clock_skew))
        self._shared.secrets.add(credentials.password)
        self._owns_session = session is None
        self._session = session if session is not None else requests.Session()
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.retry = retry if retry is not None else RetryPolicy()
        self._sleep = sleep
        self.deadline = deadline
        self._rng = rng
        self.max_response_bytes = max_response_bytes
        self._refresh_credentials = refresh_credentials

    def __repr__(self) -> str:
        return f"CommsTransport(account_sid={self.account_sid!r})"

    @property
    def account_sid(self) -> str:
        return self._shared.credentials.account_sid

    @property
    def clock(self) -> ApiClock:
        return self._shared.clock

    @property
    def request_count(self) -> int:
        return self._shared.request_count

    @property
    def request_counts(self) -> dict[str, int]:
        return self._shared.request_counts

    @property
    def credential_refreshes(self) -> int:
        """How many times a 401 made the transport re-read its credentials."""
        return self._shared.credential_refreshes

    def with_deadline(self, deadline: Callable[[], float] | None) -> CommsTransport:
        view = copy.copy(self)
        view.deadline = deadline
        view._owns_session = False
        return view

    def close(self) -> None:
        """Close the session if the transport made it (an injected session belongs to its owner)."""
        if self._owns_session:
            self._session.close()

    def get_json(self, endpoint: str, url: str, params: Mapping[str, str]) -> object:
        """The JSON body of a 2xx answer to ``GET url``; errors as :class:`CommsApiError` subclasses."""
        response = self.get(endpoint, url, params)
        try:
            return json.loads(response.body)
        except ValueError:
            raise CommsMalformedResponse(
                f"Comms API {endpoint} returned a body that is not JSON (HTTP {response.status})",
                status=response.status,
                endpoint=endpoint,
            ) from None

    def get(self, endpoint: str, url: str, params: Mapping[str, str]) -> ApiResponse:
        """``GET url`` until a 2xx answer, retrying what may be retried (module docstring)."""
        throttled = 0
        transport_failures = 0
        refreshed = False
        while True:
            try:
                response = self._send(endpoint, url, params)
            except _TRANSPORT_ERRORS as exc:
                transport_failures += 1
                self._wait_after_transport_error(endpoint, url, exc, transport_failures)
                continue
            except requests.RequestException as exc:
                raise CommsTransportError(
                    self._shared.redact(f"Comms API {endpoint} request failed: {type(exc).__name__}: {exc}"),
                    attempts=transport_failures + throttled + 1,
                    endpoint=endpoint,
                ) from None
            status = response.status
            if 200 <= status < 300:
                return response
            if status in THROTTLE_STATUSES:
                throttled += 1
                self._wait_after_throttle(endpoint, response, throttled)
                continue
            if status == 401 and not refreshed and self._refresh(endpoint):
                refreshed = True
                continue
            raise self._error(endpoint, response)

    # -- one request -----------------------------------------------------------------------------------

    def _send(self, endpoint: str, url: str, params: Mapping[str, str]) -> ApiResponse:
        shared = self._shared
        shared.request_count += 1
        shared.request_counts[endpoint] = shared.request_counts.get(endpoint, 0) + 1
        started = time.monotonic()
        read_timeout = self._read_timeout()
        response = self._session.get(
            url,
            params=dict(params),
            auth=shared.auth,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            timeout=(self.connect_timeout, read_timeout),
            allow_redirects=False,
            stream=True,
        )
        try:
            body = read_body(
                response, endpoint=endpoint, limit=self.max_response_bytes, give_up_at=started + read_timeout
            )
        except BaseException:
            response.close()  # the rest of the body is abandoned with its connection
            raise
        response.raw.release_conn()  # read to the end: the connection goes back to the pool
        if not shared.clock.observe(parse_http_date(response.headers.get("Date"))):
            logger.warning(
                "Comms API %s answered with a Date more than %.0f s from the local clock; not used as the "
                "API's clock (MAX_CLOCK_SKEW_SECONDS)",
                endpoint,
                shared.clock.max_skew.total_seconds() if shared.clock.max_skew else 0.0,
                extra={"endpoint": endpoint, "date": response.headers.get("Date", "")[:40]},
            )
        logger.debug(
            "Comms API %s -> HTTP %d in %.3fs",
            endpoint,
            response.status_code,
            time.monotonic() - started,
            extra={"endpoint": endpoint, "status": response.status_code},
        )
        return ApiResponse(response.status_code, response.headers, body)

    def _refresh(self, endpoint: str) -> bool:
        """Re-read the credentials after a 401; True when they changed (the request is then retried)."""
        if self._refresh_credentials is None:
            return False
        return self._shared.rotate(self._refresh_credentials(), endpoint)

    # -- waits -----------------------------------------------------------------------------------------

    def _read_timeout(self) -> float:
        # A read that outlives the caller's deadline would only get the Lambda killed mid-request.
        if self.deadline is None:
            return self.read_timeout
        return max(min(self.read_timeout, self.deadline()), 0.1)

    def _fits_deadline(self, delay: float) -> bool:
        left = None if self.deadline is None else self.deadline()
        return left is None or delay + self.retry.min_request_time <= left

    def _wait_after_throttle(self, endpoint: str, response: ApiResponse, throttled: int) -> None:
        status = response.status
        retry_after = parse_retry_after(
            response.headers.get("Retry-After"),
            response_date=parse_http_date(response.headers.get("Date")),
            now=self._shared.clock.local(),
        )
        envelope = [self._shared.redact_detail(d) for d in _error_envelope(response.body)]
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
                self._shared.redact(
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

    def _wait_after_transport_error(self, endpoint: str, url: str, exc: Exception, failures: int) -> None:
        kind = transport_cause(exc)
        delay = self.retry.delay(failures, None, self._rng())
        reason = ""
        if failures >= self.retry.transport_attempts:
            reason = f"after {failures} attempts"
        elif not self._fits_deadline(delay):
            reason = "with no time left to retry (deadline)"
        if reason:
            host = urlsplit(url).netloc
            raise CommsTransportError(
                self._shared.redact(f"Comms API {endpoint} at {host} failed ({kind}) {reason}"),
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

    # -- errors ----------------------------------------------------------------------------------------

    def _error(self, endpoint: str, response: ApiResponse) -> CommsApiError:
        status = response.status
        envelope = [self._shared.redact_detail(d) for d in _error_envelope(response.body)]
        detail = envelope[0] if envelope else None
        cls = error_class_for_status(status)
        summary = f"Comms API {endpoint} failed: HTTP {status}{_twilio_suffix(detail)}"
        logger.info(
            "Comms API %s answered HTTP %d", endpoint, status, extra={"endpoint": endpoint, "status": status}
        )
        return cls(
            self._shared.redact(summary),
            status=status,
            code=detail.code if detail else None,
            message=detail.message if detail else None,
            endpoint=endpoint,
            errors=envelope,
        )


def read_body(response: requests.Response, *, endpoint: str, limit: int, give_up_at: float) -> bytes:
    """The whole body of a streamed response, or an error once it outgrows ``limit`` bytes or ``give_up_at``
    (``time.monotonic``) passes. Each read waits no longer than what is left, so a server dripping bytes
    cannot stretch it."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(endpoint, response.status_code, int(declared), limit)
    raw: Any = response.raw
    read = getattr(raw, "read1", None) or raw.read
    body = bytearray()
    while True:
        left = give_up_at - time.monotonic()
        if left <= 0:
            raise requests.exceptions.ReadTimeout("the response body did not arrive in time")
        _cap_socket_wait(raw, left)
        try:
            chunk = read(_CHUNK_BYTES, decode_content=True)
        # urllib3's errors as requests would have raised them from ``response.content``.
        except (ReadTimeoutError, TimeoutError):
            raise requests.exceptions.ReadTimeout("the response body did not arrive in time") from None
        except ProtocolError as exc:
            raise requests.exceptions.ChunkedEncodingError(type(exc).__name__) from None
        except DecodeError as exc:
            raise requests.exceptions.ContentDecodingError(type(exc).__name__) from None
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > limit:
            raise _too_large(endpoint, response.status_code, len(body), limit)


def _too_large(endpoint: str, status: int, size: int, limit: int) -> CommsResponseTooLarge:
    return CommsResponseTooLarge(
        f"Comms API {endpoint} response body of {size} bytes or more exceeds the {limit}-byte limit "
        "(COMMS_MAX_RESPONSE_BYTES)",
        status=status,
        endpoint=endpoint,
    )


def _cap_socket_wait(raw: Any, seconds: float) -> None:
    """Let the next read of the body wait at most ``seconds`` (urllib3 set the socket's timeout to the
    whole read timeout when it sent the request)."""
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    if sock is not None:
        sock.settimeout(max(seconds, 0.01))


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _error_envelope(body: bytes) -> list[ApiErrorDetail]:
    """The entries of Twilio's error envelope; empty for a non-JSON or differently shaped body."""
    try:
        payload: Any = json.loads(body)
        return list(ApiErrorEnvelope.model_validate(payload).errors)
    except (ValueError, ValidationError):
        return []


def _twilio_suffix(detail: ApiErrorDetail | None) -> str:
    if detail is None or (detail.code is None and not detail.message):
        return ""
    return f" (Twilio error {detail.code}: {detail.message})"


def transport_cause(exc: Exception) -> str:
    """What went wrong on the wire, in words a person can act on (``connection refused``, ``host name not
    resolved``, ``read timeout``), without the URL or anything else the exception text may carry."""
    if isinstance(exc, requests.ConnectTimeout):
        return "connect timeout"
    if isinstance(exc, requests.Timeout | ReadTimeoutError):
        return "read timeout"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake failed"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError | ProtocolError):
        return "connection dropped mid-response"
    text = str(exc)
    if "NameResolutionError" in text or "Name or service not known" in text or "getaddrinfo" in text:
        return "host name not resolved"
    errno_text = _ERRNO_TEXT.search(text)
    if errno_text:
        return errno_text.group(1).strip().lower()
    return type(exc).__name__


_ERRNO_TEXT: Final = re.compile(r"\[Errno -?\d+\] ([A-Za-z ]+)")
