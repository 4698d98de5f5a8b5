"""The pure pieces of the Comms client: Retry-After parsing, backoff math, argument checks, error types.

The client's HTTP behaviour is tested over real HTTP in tests/product/integration/test_comms_client_http.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from comms_bridge.comms.client import (
    USER_AGENT,
    CommsClient,
    RetryPolicy,
    parse_http_date,
    parse_retry_after,
)
from comms_bridge.comms.credentials import CommsCredentials
from comms_bridge.comms.exceptions import (
    CommsApiError,
    CommsBadRequest,
    CommsForbidden,
    CommsNotFound,
    CommsServerError,
    CommsThrottled,
    CommsUnauthorized,
    InvalidOperationId,
    error_class_for_status,
)
from comms_bridge.comms.models import ApiErrorDetail, is_operation_id
from comms_bridge.settings import SettingsError

TOKEN = "auth-token-0123456789abcdef-SECRET"
CREDS = CommsCredentials.from_auth_token("AC" + "a" * 32, TOKEN)
VALID_ID = "comms_operation_01h9krwprkeee8fzqspvwy6nq8"
NOW = datetime(2024, 6, 20, 10, 15, 30, tzinfo=UTC)


class ExplodingSession(requests.Session):
    """A session that must never be used: argument checks happen before any request."""

    def request(self, *args: object, **kwargs: object) -> requests.Response:  # type: ignore[override]
        raise AssertionError("no HTTP request expected")


def offline_client(**kwargs: object) -> CommsClient:
    return CommsClient("https://comms.twilio.com/v1", CREDS, session=ExplodingSession(), **kwargs)  # type: ignore[arg-type]


# -- Retry-After ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [("0", 0.0), ("1", 1.0), (" 120 ", 120.0), ("1.5", 1.5), (None, None), ("", None), ("soon", None)],
)
def test_retry_after_seconds(header, expected):
    assert parse_retry_after(header, response_date=None, now=NOW) == expected


@pytest.mark.parametrize("header", ["-1", "nan", "inf", "-0.5"])
def test_retry_after_rejects_nonsense_numbers(header):
    assert parse_retry_after(header, response_date=None, now=NOW) is None


def test_retry_after_http_date_is_measured_against_the_response_date_not_the_local_clock():
    # The API clock (Date header) is a day behind the local clock: only the difference between the two
    # headers counts.
    response_date = datetime(2024, 6, 19, 10, 0, 0, tzinfo=UTC)
    header = "Wed, 19 Jun 2024 10:00:07 GMT"
    assert parse_retry_after(header, response_date=response_date, now=NOW) == 7.0


def test_retry_after_http_date_without_a_response_date_uses_now():
    assert parse_retry_after("Thu, 20 Jun 2024 10:15:40 GMT", response_date=None, now=NOW) == 10.0


def test_retry_after_http_date_in_the_past_means_no_wait():
    assert parse_retry_after("Thu, 20 Jun 2024 10:00:00 GMT", response_date=NOW, now=NOW) == 0.0


def test_parse_http_date():
    assert parse_http_date("Thu, 20 Jun 2024 10:15:30 GMT") == NOW
    assert parse_http_date("Thu, 20 Jun 2024 12:15:30 +0200") == NOW
    assert parse_http_date("Thu, 20 Jun 2024 10:15:30 -0000") == NOW
    assert parse_http_date("yesterday") is None
    assert parse_http_date("") is None
    assert parse_http_date(None) is None


@settings(max_examples=100, deadline=None)
@given(
    seconds=st.integers(min_value=0, max_value=86_400), skew=st.integers(min_value=-(10**6), max_value=10**6)
)
def test_retry_after_date_ignores_local_clock_skew(seconds, skew):
    response_date = NOW + timedelta(seconds=skew)
    retry_at = response_date + timedelta(seconds=seconds)
    header = retry_at.strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert parse_retry_after(header, response_date=response_date, now=NOW) == float(seconds)


# -- backoff --------------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    retry_number=st.integers(min_value=1, max_value=100),
    rand=st.floats(min_value=0.0, max_value=1.0),
    base=st.floats(min_value=0.0, max_value=5.0),
    cap=st.floats(min_value=0.0, max_value=60.0),
)
def test_backoff_without_retry_after_is_capped_and_jittered(retry_number, rand, base, cap):
    policy = RetryPolicy(backoff_base=base, backoff_cap=cap)
    ceiling = policy.backoff_ceiling(retry_number)
    assert ceiling <= cap
    delay = policy.delay(retry_number, None, rand)
    assert ceiling / 2 <= delay <= ceiling + 1e-9


@settings(max_examples=200, deadline=None)
@given(
    retry_number=st.integers(min_value=1, max_value=50),
    rand=st.floats(min_value=0.0, max_value=1.0),
    retry_after=st.floats(min_value=0.0, max_value=3600.0),
)
def test_backoff_with_retry_after_never_waits_less_than_asked(retry_number, rand, retry_after):
    policy = RetryPolicy()
    delay = policy.delay(retry_number, retry_after, rand)
    assert retry_after <= delay <= retry_after + policy.retry_after_jitter


def test_backoff_grows_then_caps():
    policy = RetryPolicy(backoff_base=0.5, backoff_cap=4.0)
    assert [policy.backoff_ceiling(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert policy.backoff_ceiling(10_000) == 4.0


def test_jitter_spreads_delays():
    policy = RetryPolicy()
    assert policy.delay(2, 1.0, 0.0) < policy.delay(2, 1.0, 0.99)
    assert policy.delay(2, None, 0.0) < policy.delay(2, None, 0.99)


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": 0}, {"transport_attempts": 0}, {"backoff_base": -1.0}, {"min_request_time": -1}],
)
def test_retry_policy_rejects_nonsense(kwargs):
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


# -- errors ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, CommsBadRequest),
        (401, CommsUnauthorized),
        (403, CommsForbidden),
        (404, CommsNotFound),
        (500, CommsServerError),
        (502, CommsServerError),
        (409, CommsApiError),
    ],
)
def test_error_class_for_status(status, cls):
    assert error_class_for_status(status) is cls


def test_error_carries_status_code_message():
    detail = ApiErrorDetail(code=20404, message="The resource was not found.")
    error = CommsNotFound(
        "not found", code=20404, message=detail.message, endpoint="fetch_operation", errors=[detail]
    )
    assert (error.status, error.code, error.message, error.errors) == (404, 20404, detail.message, (detail,))
    assert str(error) == "not found"
    assert "CommsNotFound(status=404, code=20404" in repr(error)
    throttled = CommsThrottled("slow down", retry_after=3.0, attempts=4, status=429)
    assert (throttled.status, throttled.retry_after, throttled.attempts) == (429, 3.0, 4)
    assert isinstance(InvalidOperationId("bad"), ValueError)


# -- construction and argument checks -------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://comms.twilio.com/v1",
        "https://comms.twilio.com/v1/",
        "http://127.0.0.1:8765/v1",
        "http://localhost:1/v1",
        "http://[::1]:8080/v1",
    ],
)
def test_accepts_https_and_loopback_http(url):
    client = CommsClient(url, CREDS, session=ExplodingSession())
    assert not client.base_url.endswith("/")


@pytest.mark.parametrize(
    "url", ["http://comms.twilio.com/v1", "ftp://127.0.0.1/v1", "comms.twilio.com/v1", "http://10.0.0.1/v1"]
)
def test_refuses_plain_http_to_a_remote_host(url):
    with pytest.raises(SettingsError, match="https://"):
        CommsClient(url, CREDS)


def test_refuses_credentials_in_the_url():
    with pytest.raises(SettingsError, match="must not carry user info") as info:
        CommsClient(f"https://AC1:{TOKEN}@comms.twilio.com/v1", CREDS)
    assert TOKEN not in str(info.value)


@pytest.mark.parametrize("timeout", [{"connect_timeout": 0}, {"read_timeout": -1.0}])
def test_refuses_non_positive_timeouts(timeout):
    with pytest.raises(ValueError):
        offline_client(**timeout)


def test_repr_hides_the_secret():
    client = offline_client()
    assert TOKEN not in repr(client)
    assert "AC" + "a" * 32 in repr(client)
    assert USER_AGENT.startswith("comms-bridge/")


@pytest.mark.parametrize(
    "operation_id",
    [
        "",
        "comms_operation_",
        "comms_operation_81h9krwprkeee8fzqspvwy6nq8",  # first character must be 0-7
        "comms_operation_01H9KRWPRKEEE8FZQSPVWY6NQ8",  # upper case
        "comms_operation_01h9krwprkeee8fzqspvwy6nq8\n",
        "comms_operation_01h9krwprkeee8fzqspvwy6nq8/../../Secrets",
        "comms_operation_01h9krwprkeee8fzqspvwy6nq8?x=1",
        "comms_email_01h9krwprkeee8fzqspvwy6nq8",
        "comms_operation_01i9krwprkeee8fzqspvwy6nq8",  # i is not Crockford base32
    ],
)
def test_operation_id_is_checked_before_any_request(operation_id):
    client = offline_client()
    with pytest.raises(InvalidOperationId):
        client.fetch_operation(operation_id)
    with pytest.raises(InvalidOperationId):
        client.list_operation_errors(operation_id, max_items=10)
    assert client.request_count == 0


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=60))
def test_any_text_that_is_not_an_id_never_reaches_the_network(text):
    client = offline_client()
    if not is_operation_id(text):
        with pytest.raises(InvalidOperationId):
            client.fetch_operation(text)


@pytest.mark.parametrize("page_size", [0, 1001, -5, True])
def test_page_size_must_be_1_to_1000(page_size):
    client = offline_client()
    with pytest.raises(ValueError, match="page_size"):
        client.list_operations(page_size=page_size)
    with pytest.raises(ValueError, match="page_size"):
        client.list_operation_errors(VALID_ID, max_items=5, page_size=page_size)


def test_dates_must_be_timezone_aware():
    client = offline_client()
    with pytest.raises(ValueError, match="start_date"):
        client.list_operations(start_date=datetime(2024, 6, 20))
    with pytest.raises(ValueError, match="end_date"):
        client.list_operations(end_date=datetime(2024, 6, 20))
    # Aware but not UTC is fine: it is sent converted to UTC.
    client.list_operations(start_date=datetime(2024, 6, 20, tzinfo=timezone(timedelta(hours=2))))


def test_max_items_must_be_positive():
    with pytest.raises(ValueError, match="max_items"):
        offline_client().list_operation_errors(VALID_ID, max_items=0)


def test_now_is_the_local_clock_before_any_response():
    client = offline_client(clock=lambda: NOW)
    assert client.server_time is None
    assert client.now() == NOW
