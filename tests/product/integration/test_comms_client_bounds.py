"""What the Comms client believes and accepts (contract §6), over real HTTP on loopback: bounded bodies
(size and time), the API's ``Date`` trusted only near the local clock, operations dated later than that
clock allows, and credentials re-read after a 401.

Oversized and dripping bodies come from ``tests/support/unruly_server.py`` (it counts what it sent);
the rest from the ``ScriptedServer`` of test_comms_client_http.py.
"""

from __future__ import annotations

import base64
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from comms_bridge.comms.client import RetryPolicy
from comms_bridge.comms.credentials import CommsCredentials
from comms_bridge.comms.exceptions import (
    CommsMalformedOperation,
    CommsResponseTooLarge,
    CommsTransportError,
    CommsUnauthorized,
)
from tests.product.integration.test_comms_client_http import (
    ACCOUNT_SID,
    API_NOW,
    OP_ID,
    TOKEN_CREDS,
    Reply,
    client_for,
    envelope,
    operation,
    page_body,
    serve,  # noqa: F401 - fixture
)
from tests.support.unruly_server import Unruly, UnrulyServer

pytestmark = pytest.mark.integration

MB = 1024 * 1024
PAGE_HEAD = b'{"operations":[],"pagination":{"next":null,"self":"s"},"padding":"'
PAGE_TAIL = b'"}'
YEAR_2099 = datetime(2099, 1, 1, tzinfo=UTC)


def peak_bytes_of(call: Any) -> tuple[int, BaseException | None]:
    """Peak Python memory allocated while ``call`` ran (tracemalloc), and what it raised."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    raised: BaseException | None = None
    try:
        call()
    except Exception as exc:  # the test looks at it
        raised = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak, raised


# -- size ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["with-length", "chunked"])
def test_a_60_mb_page_is_refused_without_reading_it_into_memory(chunked: bool) -> None:
    """Before: a 60 MB page was read whole and parsed (the function went from 40 to 232 MB of 256)."""
    answer = Unruly(PAGE_HEAD, filler=b"x" * MB, repeat=60, tail=PAGE_TAIL, chunked=chunked, date=API_NOW)
    with UnrulyServer(answer) as server:
        client = client_for(server.base_url, retry=RetryPolicy(transport_attempts=1))
        peak, raised = peak_bytes_of(lambda: list(client.list_operations()))
    assert isinstance(raised, CommsResponseTooLarge), raised
    assert "COMMS_MAX_RESPONSE_BYTES" in str(raised) and raised.status == 200
    assert peak < 12 * MB, f"peak {peak / MB:.1f} MB"
    assert not server.sent[0].complete, "the client hung up instead of reading the rest"


def test_the_size_cap_is_configurable_and_a_page_within_it_is_fine(serve) -> None:  # noqa: F811
    body = page_body([operation()], None)
    server = serve([Reply(body=body), Reply(body=body)])
    assert next(iter(client_for(server).list_operations())).operations[0].id == OP_ID
    small = client_for(server, max_response_bytes=100)
    with pytest.raises(CommsResponseTooLarge):
        list(small.list_operations())


# -- time ------------------------------------------------------------------------------------------------


def test_a_dripping_server_cannot_hold_the_deadline() -> None:
    """A byte every 0.5 s never trips a read timeout. Before: a 3 s deadline was held for 23.5 s (the
    whole 47-byte body); now the body must arrive by the deadline."""
    body = b'{"operations":[],"pagination":{"next":null}}  '  # 47 bytes
    with UnrulyServer(Unruly(body, drip=0.5, date=API_NOW)) as server:
        started = time.monotonic()
        client = client_for(server.base_url, deadline=lambda: 3.0 - (time.monotonic() - started))
        with pytest.raises(CommsTransportError, match="timeout"):
            list(client.list_operations())
        sent = server.sent[0]
    assert not sent.complete
    # 3 s at a byte per 0.5 s: about 6 bytes (fewer when the machine is busy, never the whole body).
    assert sent.body_bytes <= 3.0 / 0.5 + 2, sent
    assert len(server.sent) == 1, "no retry: no time left"


def test_without_a_deadline_the_read_timeout_bounds_the_whole_body() -> None:
    body = b'{"operations":[],"pagination":{"next":null}}  '
    with UnrulyServer(Unruly(body, drip=0.2, date=API_NOW)) as server:
        client = client_for(server.base_url, read_timeout=1.0, retry=RetryPolicy(transport_attempts=1))
        with pytest.raises(CommsTransportError, match="timeout"):
            list(client.list_operations())
        assert server.sent[0].body_bytes <= 1.0 / 0.2 + 2


# -- the API's clock -------------------------------------------------------------------------------------


def local_at(moment: datetime) -> dict[str, Any]:
    return {"clock": lambda: moment, "max_clock_skew": 3600}


@pytest.mark.parametrize("date", [YEAR_2099, API_NOW - timedelta(hours=2)], ids=["2099", "2h-behind"])
def test_a_date_far_from_the_local_clock_is_counted_not_believed(serve, date: datetime) -> None:  # noqa: F811
    server = serve(
        [Reply(body=operation(), date=date), Reply(body=operation(), date=API_NOW + timedelta(seconds=5))]
    )
    client = client_for(server, **local_at(API_NOW))
    client.fetch_operation(OP_ID)
    assert client.server_time is None and client.now() == API_NOW and client.distrusted_dates == 1
    client.fetch_operation(OP_ID)
    assert client.now() == API_NOW + timedelta(seconds=5) and client.distrusted_dates == 1
    view = client.with_deadline(lambda: 60.0)
    assert view.distrusted_dates == 1 and view.now() == client.now(), "views share the clock"


def test_a_date_within_the_bound_is_the_api_clock(serve) -> None:  # noqa: F811
    date = API_NOW + timedelta(minutes=59)
    server = serve([Reply(body=operation(), date=date)])
    client = client_for(server, **local_at(API_NOW))
    client.fetch_operation(OP_ID)
    assert client.now() == date and client.distrusted_dates == 0


def test_far_future_operations_are_skipped_items_in_a_listing(serve) -> None:  # noqa: F811
    future = operation("comms_operation_0" + "1" * 25)
    future["updatedAt"] = "2024-06-28T10:15:30Z"  # eight days after the API's clock
    server = serve([Reply(body=page_body([operation(), future], None))])
    (page,) = list(client_for(server, **local_at(API_NOW)).list_operations())
    assert [op.id for op in page.operations] == [OP_ID]
    (skipped,) = page.skipped
    assert skipped.item_id == future["id"] and "updatedAt 2024-06-28T10:15:30Z is later" in skipped.reason


def test_a_far_future_operation_fetched_is_malformed(serve) -> None:  # noqa: F811
    future = operation() | {"updatedAt": "2099-01-01T00:00:00Z"}
    server = serve([Reply(body=future)])
    with pytest.raises(CommsMalformedOperation, match="later than the API's clock allows"):
        client_for(server, **local_at(API_NOW)).fetch_operation(OP_ID)


# -- credential rotation ---------------------------------------------------------------------------------

ROTATED = CommsCredentials.from_auth_token(ACCOUNT_SID, "tok-ROTATED-0a1b2c3d4e5f")


def basic(credentials: CommsCredentials) -> str:
    return "Basic " + base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()


def test_a_401_rereads_the_secret_once_and_retries_with_the_new_credentials(serve) -> None:  # noqa: F811
    server = serve(
        lambda seen: (
            Reply(body=operation())
            if seen.headers["Authorization"] == basic(ROTATED)
            else Reply(401, envelope(20003, "Authenticate"))
        )
    )
    reads: list[int] = []
    client = client_for(server, refresh_credentials=lambda: reads.append(1) or ROTATED)
    assert client.fetch_operation(OP_ID).id == OP_ID
    assert [s.headers["Authorization"] for s in server.seen] == [basic(TOKEN_CREDS), basic(ROTATED)]
    assert len(reads) == 1
    client.fetch_operation(OP_ID)  # the new credentials stay
    assert len(reads) == 1 and server.seen[-1].headers["Authorization"] == basic(ROTATED)


def test_a_401_with_an_unchanged_secret_fails_after_one_reread(serve) -> None:  # noqa: F811
    server = serve(lambda seen: Reply(401, envelope(20003, "Authenticate")))
    reads: list[int] = []
    client = client_for(server, refresh_credentials=lambda: reads.append(1) or TOKEN_CREDS)
    with pytest.raises(CommsUnauthorized):
        client.fetch_operation(OP_ID)
    assert len(reads) == 1 and len(server.seen) == 1


def test_a_rotated_secret_naming_another_account_is_refused(serve) -> None:  # noqa: F811
    other = CommsCredentials.from_auth_token("AC" + "f" * 32, "tok-OTHER")
    server = serve(lambda seen: Reply(401, envelope(20003, "Authenticate")))
    with pytest.raises(CommsUnauthorized, match="another account"):
        client_for(server, refresh_credentials=lambda: other).fetch_operation(OP_ID)
